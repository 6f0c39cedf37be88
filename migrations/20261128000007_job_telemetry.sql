-- Telemetry for jobs: the trace of the request that enqueued a job (so the
-- job's span can link to it), and the queue depth across tenants.

-- A W3C traceparent, set when the enqueuing request was sampled.
alter table jobs add column trace_parent text
    check (trace_parent is null or length(trace_parent) <= 128);

-- claim_jobs now also returns trace_parent (same behaviour otherwise; see
-- the jobs migration for why it is SECURITY DEFINER).
drop function claim_jobs(text, integer, integer, text[]);
create function claim_jobs(p_worker text, p_limit integer, p_lease_ms integer, p_kinds text[])
returns table (tenant_id uuid, id uuid, kind text, payload jsonb, attempts integer, max_attempts integer,
               trace_parent text)
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
    returning j.tenant_id, j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.trace_parent;
$$;
revoke all on function claim_jobs(text, integer, integer, text[]) from public;

-- The queue depth by kind and state over every tenant, for the
-- deskd.jobs.queue.depth gauge: counts only, no tenant, no payload. The one
-- other cross-tenant read the app role may make, for the same reason as
-- claiming (a worker serves every tenant).
create function job_queue_depth()
returns table (kind text, state text, jobs bigint)
language sql
stable
security definer
set search_path = public, pg_temp
as $$
    select j.kind, j.state, count(*)
    from jobs j
    where j.state in ('queued', 'running', 'dead')
    group by j.kind, j.state;
$$;
revoke all on function job_queue_depth() from public;

create index jobs_dead on jobs (kind) where state = 'dead';
