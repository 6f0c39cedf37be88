-- Durable jobs, enqueued in the same transaction as the write that causes
-- them (a rolled-back write never runs its job; a committed one never loses
-- it). Tenant-owned like every other table: RLS with FORCE and the standard
-- policy, so enqueueing and finishing a job run in the job's tenant context.

create table jobs (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    id           uuid not null,
    kind         text not null check (char_length(kind) between 1 and 100),
    payload      jsonb not null,
    unique_key   text,
    state        text not null default 'queued'
                 check (state in ('queued', 'running', 'succeeded', 'dead')),
    attempts     integer not null default 0 check (attempts >= 0),
    max_attempts integer not null check (max_attempts >= 1),
    run_at       timestamptz not null,
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    create_time  timestamptz not null default now(),
    update_time  timestamptz not null default now(),
    finish_time  timestamptz,
    primary key (tenant_id, id)
);
-- One live job per unique key: concurrent enqueues of one key make one job.
create unique index jobs_unique_live on jobs (tenant_id, kind, unique_key)
    where unique_key is not null and state in ('queued', 'running');
create index jobs_due on jobs (run_at) where state = 'queued';
create index jobs_leases on jobs (locked_until) where state = 'running';
create index jobs_by_state on jobs (tenant_id, state, update_time);

alter table jobs enable row level security;
alter table jobs force row level security;
create policy tenant_isolation on jobs
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

-- Claiming is the one operation that must look across tenants: a worker
-- serves every tenant and cannot know in advance whose job is due. It is a
-- SECURITY DEFINER function (written reason, DESIGN §4 rule 6) owned by the
-- migration owner, with a fixed search_path, that does exactly one thing:
-- lock up to p_limit due jobs (or jobs whose lease expired) of the given
-- kinds to the caller and return them. The policy below lets only the owner
-- (the function's definer) see all jobs; the app role keeps the tenant
-- policy. Everything else a worker does with a job — running its SQL,
-- finishing, retrying — runs in that job's tenant transaction under RLS.
create policy claim_as_owner on jobs to current_user using (true) with check (true);

create function claim_jobs(p_worker text, p_limit integer, p_lease_ms integer, p_kinds text[])
returns table (tenant_id uuid, id uuid, kind text, payload jsonb, attempts integer, max_attempts integer)
language sql
security definer
set search_path = public, pg_temp
as $$
    with due as (
        select j.tenant_id, j.id
        from jobs j
        where j.kind = any (p_kinds)
          and ((j.state = 'queued' and j.run_at <= now())
               or (j.state = 'running' and j.locked_until < now()))
        order by j.run_at
        limit p_limit
        for update skip locked
    )
    update jobs j
       set state = 'running',
           attempts = j.attempts + 1,
           locked_by = p_worker,
           locked_until = now() + make_interval(secs => p_lease_ms / 1000.0),
           update_time = now()
      from due
     where j.tenant_id = due.tenant_id and j.id = due.id
    returning j.tenant_id, j.id, j.kind, j.payload, j.attempts, j.max_attempts;
$$;
revoke all on function claim_jobs(text, integer, integer, text[]) from public;
