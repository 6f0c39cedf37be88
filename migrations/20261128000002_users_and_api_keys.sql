-- Users grow kinds (people and service accounts) and an etag version;
-- service accounts authenticate with API keys.

alter table users add column kind text not null default 'person'
    check (kind in ('person', 'service_account'));
alter table users add column version bigint not null default 1;
alter table users alter column role drop not null;
alter table users drop constraint users_email_check;
-- People have an e-mail and a role; service accounts have neither.
alter table users add constraint users_kind_shape check (
    (kind = 'person' and role is not null and char_length(email) between 3 and 320)
    or (kind = 'service_account' and role is null and email = '')
);
-- E-mails are unique among people; service accounts all have ''.
alter table users drop constraint users_tenant_id_email_key;
create unique index users_email_unique on users (tenant_id, email) where kind = 'person';
-- Keyset pagination (oldest first) and e-mail prefix search.
create index users_by_create_time on users (tenant_id, create_time, id);
create index users_by_email on users (tenant_id, email text_pattern_ops);

create table api_keys (
    tenant_id          uuid not null references tenants (id) on delete cascade,
    id                 uuid not null,
    service_account_id uuid not null,
    display_name       text not null check (char_length(display_name) between 1 and 200),
    scopes             text[] not null check (cardinality(scopes) between 1 and 16),
    -- HMAC-SHA256 of the secret under the server's key: the secret itself is
    -- never stored.
    secret_digest      bytea not null check (octet_length(secret_digest) = 32),
    create_time        timestamptz not null,
    expire_time        timestamptz,
    revoke_time        timestamptz,
    last_use_time      timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, service_account_id) references users (tenant_id, id)
);
create index api_keys_by_create_time on api_keys (tenant_id, create_time, id);
create index api_keys_by_service_account on api_keys (tenant_id, service_account_id);

alter table api_keys enable row level security;
alter table api_keys force row level security;
create policy tenant_isolation on api_keys
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
