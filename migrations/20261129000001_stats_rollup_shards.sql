-- The created-tickets rollup in shards: every new ticket of a tenant used
-- to add 1 to the same row, ticket_stats_created_daily (tenant, today,
-- 'open', priority), and held that row's lock until its transaction had
-- committed (its WAL flushed). A tenant's concurrent CreateTickets therefore
-- queued on one row, one WAL flush each, and could not share a flush (group
-- commit). Now each of its keys is spread over 8 rows (`shard`), picked by
-- the writing server process, so concurrent writers of one tenant land on
-- different rows; readers already sum rows per key (`sum(n) ... group by`).
--
-- The shard is constant within a transaction (one server process), so a
-- transaction still locks rollup rows in key order only. A ticket's +1 and
-- its later -1 may sit in different shards: a shard may hold a negative
-- count, only the sum per key is meaningful.
--
-- The resolved rollup stays one row per key: its key includes the assignee,
-- so concurrent writes rarely meet on a row, and 8 shards multiplied its
-- rows (days x priorities x assignees) enough to slow a year's statistics by
-- 70 % (BENCHMARKS.md, "GetTicketStats at 1,000,000 tickets").

alter table ticket_stats_created_daily add column shard smallint not null default 0;
alter table ticket_stats_created_daily drop constraint ticket_stats_created_daily_pkey,
    add primary key (tenant_id, day, status, priority, shard);

create or replace function ticket_stats_maintain() returns trigger
language plpgsql as $$
declare
    cols constant text := 'tenant_id, create_time, status, priority, assignee_id, resolve_time';
    shard constant smallint := pg_backend_pid() % 8;
    delta text;
begin
    delta := case tg_op
        when 'INSERT' then format('select %s, 1 as d from new_rows', cols)
        when 'DELETE' then format('select %s, -1 as d from old_rows', cols)
        else format('select %s, 1 as d from new_rows union all select %s, -1 as d from old_rows', cols, cols)
    end;
    execute format($sql$
        insert into ticket_stats_created_daily as r (tenant_id, day, status, priority, shard, n)
        select x.tenant_id, (x.create_time at time zone 'UTC')::date, x.status, x.priority, $1, sum(x.d)
        from (%s) as x
        where exists (select from tenants t where t.id = x.tenant_id)
        group by 1, 2, 3, 4
        having sum(x.d) <> 0
        order by 1, 2, 3, 4
        on conflict (tenant_id, day, status, priority, shard) do update set n = r.n + excluded.n
    $sql$, delta) using shard;
    execute format($sql$
        insert into ticket_stats_resolved_daily as r (tenant_id, day, priority, assignee_id, n)
        select x.tenant_id, (x.resolve_time at time zone 'UTC')::date, x.priority,
               coalesce(x.assignee_id, '00000000-0000-0000-0000-000000000000'), sum(x.d)
        from (%s) as x
        where x.resolve_time is not null and exists (select from tenants t where t.id = x.tenant_id)
        group by 1, 2, 3, 4
        having sum(x.d) <> 0
        order by 1, 2, 3, 4
        on conflict (tenant_id, day, priority, assignee_id) do update set n = r.n + excluded.n
    $sql$, delta);
    return null;
end
$$;
