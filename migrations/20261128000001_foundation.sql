-- deskd foundation schema: tenants, users, tickets, idempotency keys.
--
-- Tenancy rules (DESIGN §4): every tenant-owned table has tenant_id, a
-- (tenant_id, id) primary key, tenant-scoped unique and foreign keys, and
-- FORCE'd row-level security on app.current_tenant_id. A missing tenant
-- context matches no row: nullif() turns the '' left behind by a reset
-- transaction-local setting into NULL, and NULL never equals anything.

create table tenants (
    id          uuid primary key,
    name        text not null check (char_length(name) between 1 and 200),
    status      text not null default 'active' check (status in ('active', 'suspended')),
    create_time timestamptz not null default now(),
    update_time timestamptz not null default now()
);

-- A tenant sees only itself: the tenant middleware reads its own row inside
-- the tenant transaction.
alter table tenants enable row level security;
alter table tenants force row level security;
create policy tenant_isolation on tenants
    using (id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

create table users (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    id           uuid not null,
    email        text not null check (char_length(email) between 3 and 320),
    display_name text not null default '' check (char_length(display_name) <= 200),
    role         text not null check (role in ('admin', 'agent', 'viewer')),
    active       boolean not null default true,
    create_time  timestamptz not null default now(),
    update_time  timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, email)
);

alter table users enable row level security;
alter table users force row level security;
create policy tenant_isolation on users
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

create table tickets (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    id           uuid not null,
    title        text not null check (char_length(title) between 1 and 200),
    description  text not null default '' check (octet_length(description) <= 65536),
    status       text not null check (status in ('open', 'in_progress', 'waiting', 'resolved', 'closed')),
    priority     text not null check (priority in ('low', 'normal', 'high', 'urgent')),
    assignee_id  uuid,
    reporter_id  uuid not null,
    tags         text[] not null default '{}' check (cardinality(tags) <= 20),
    create_time  timestamptz not null,
    update_time  timestamptz not null,
    resolve_time timestamptz,
    version      bigint not null default 1,
    primary key (tenant_id, id),
    -- Tenant-scoped foreign keys: a ticket can never point at another
    -- tenant's user, whatever the application does.
    foreign key (tenant_id, assignee_id) references users (tenant_id, id),
    foreign key (tenant_id, reporter_id) references users (tenant_id, id)
);

-- Keyset pagination in both supported orders; the id breaks ties.
create index tickets_by_create_time on tickets (tenant_id, create_time, id);
create index tickets_by_update_time on tickets (tenant_id, update_time, id);
create index tickets_by_assignee on tickets (tenant_id, assignee_id) where assignee_id is not null;
create index tickets_by_reporter on tickets (tenant_id, reporter_id);
create index tickets_tags on tickets using gin (tags);

alter table tickets enable row level security;
alter table tickets force row level security;
create policy tenant_isolation on tickets
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

-- Idempotent creates (AIP-155): the first response for a request_id is kept
-- for 24 hours and returned to every retry.
create table idempotency_keys (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    operation    text not null,
    request_id   uuid not null,
    request_hash bytea not null,
    response     jsonb not null,
    create_time  timestamptz not null default now(),
    primary key (tenant_id, operation, request_id)
);
create index idempotency_keys_by_time on idempotency_keys (create_time);

alter table idempotency_keys enable row level security;
alter table idempotency_keys force row level security;
create policy tenant_isolation on idempotency_keys
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
