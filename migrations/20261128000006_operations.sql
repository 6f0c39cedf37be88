-- Long-running operations (AIP-151), e.g. ticket exports. An operation is
-- inserted with the job that runs it, in the same tenant transaction, and
-- the job records its progress and outcome here. Tenant-owned: RLS with
-- FORCE and the standard policy.

create table operations (
    tenant_id        uuid not null references tenants (id) on delete cascade,
    id               uuid not null,
    kind             text not null check (char_length(kind) between 1 and 100),
    state            text not null default 'queued'
                     check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    rows_done        bigint not null default 0 check (rows_done >= 0),
    result           jsonb,
    error            jsonb,
    cancel_requested boolean not null default false,
    create_time      timestamptz not null default now(),
    update_time      timestamptz not null default now(),
    finish_time      timestamptz,
    primary key (tenant_id, id)
);
create index operations_by_time on operations (tenant_id, create_time desc, id desc);

alter table operations enable row level security;
alter table operations force row level security;
create policy tenant_isolation on operations
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
