-- Stats (deskd.stats.v1.StatsService/GetTicketStats): two indexes for the
-- figures computed from tickets, and two daily rollups for the counts.
--
-- What reads what (ARCHITECTURE.md, "Stats"):
--   * counts of tickets created per UTC day by status and priority, and of
--     tickets resolved per UTC day by priority and assignee, come from the
--     rollups for the whole UTC days inside the window and from `tickets`
--     for the partial days at its edges; with an assignee or tag filter
--     everything comes from `tickets`;
--   * the open backlog (count, ages, per assignee) comes from
--     tickets_open_by_create_time, a partial index of open tickets only;
--   * time-to-resolve percentiles come from tickets_by_resolve_time.
--
-- The rollups are kept exact by statement-level triggers on `tickets`, in
-- the same transaction as every insert, update and delete, whoever makes
-- it (the service, an operator's SQL, a bulk import). A trigger rather
-- than code in tickets/store.rs because a count that is wrong once stays
-- wrong forever: no write path may skip it. The trigger functions run as
-- the writing role (not SECURITY DEFINER), so row-level security applies
-- to the rollups inside them exactly as to the ticket write.

-- Open backlog: only open tickets (a few percent of a mature tenant),
-- covering what the backlog figures read.
create index tickets_open_by_create_time on tickets (tenant_id, create_time)
    include (status, priority, assignee_id)
    where status not in ('resolved', 'closed');

-- Resolved tickets by resolve time, covering time-to-resolve and the
-- assignee and priority filters. resolve_time is set exactly while a
-- ticket is RESOLVED or CLOSED.
create index tickets_by_resolve_time on tickets (tenant_id, resolve_time)
    include (create_time, priority, assignee_id)
    where resolve_time is not null;

-- Tickets created on `day` (UTC) that are now in `status` with `priority`.
create table ticket_stats_created_daily (
    tenant_id uuid not null references tenants (id) on delete cascade,
    day       date not null,
    status    text not null check (status in ('open', 'in_progress', 'waiting', 'resolved', 'closed')),
    priority  text not null check (priority in ('low', 'normal', 'high', 'urgent')),
    -- No `check (n >= 0)`: PostgreSQL checks the row an upsert proposes
    -- before it finds the conflict, so a decrement (proposed as a negative
    -- row) would always fail it. The tests recount the rollups instead.
    n         bigint not null,
    -- A rollup row has no id of its own: its key is what it counts.
    primary key (tenant_id, day, status, priority)
);

-- Tickets resolved on `day` (UTC: the day of resolve_time) that are still
-- RESOLVED or CLOSED, by their current priority and assignee. `assignee_id`
-- is the nil UUID for unassigned tickets (a key column cannot be null; no
-- user has the nil id).
create table ticket_stats_resolved_daily (
    tenant_id   uuid not null references tenants (id) on delete cascade,
    day         date not null,
    priority    text not null check (priority in ('low', 'normal', 'high', 'urgent')),
    assignee_id uuid not null,
    n           bigint not null,
    primary key (tenant_id, day, priority, assignee_id)
);

-- Applies the statement's changes to the rollups: +1 for every new row
-- image, -1 for every old one, summed per rollup key, so an update that
-- changes nothing the rollups count (a title, tags) writes nothing and
-- locks nothing. Keys are written in key order, and the created rollup
-- before the resolved one, so two transactions never lock rollup rows in
-- opposite orders (no deadlock). A delta for a tenant that no longer
-- exists (the cascade of a tenant's deletion) is skipped: its rollup rows
-- go with it.
create function ticket_stats_maintain() returns trigger
language plpgsql as $$
declare
    cols constant text := 'tenant_id, create_time, status, priority, assignee_id, resolve_time';
    delta text;
begin
    -- The transition tables a statement-level trigger gets depend on the
    -- event (and one trigger can have them for one event only), hence the
    -- three triggers below and the dynamic SQL naming them.
    delta := case tg_op
        when 'INSERT' then format('select %s, 1 as d from new_rows', cols)
        when 'DELETE' then format('select %s, -1 as d from old_rows', cols)
        else format('select %s, 1 as d from new_rows union all select %s, -1 as d from old_rows', cols, cols)
    end;
    execute format($sql$
        insert into ticket_stats_created_daily as r (tenant_id, day, status, priority, n)
        select x.tenant_id, (x.create_time at time zone 'UTC')::date, x.status, x.priority, sum(x.d)
        from (%s) as x
        where exists (select from tenants t where t.id = x.tenant_id)
        group by 1, 2, 3, 4
        having sum(x.d) <> 0
        order by 1, 2, 3, 4
        on conflict (tenant_id, day, status, priority) do update set n = r.n + excluded.n
    $sql$, delta);
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

-- No write may slip between the backfill and the triggers.
lock table tickets in share row exclusive mode;

-- Backfill from the tickets already there. FORCE'd row-level security
-- would show a non-superuser owner no ticket and refuse its inserts, so it
-- is lifted for the backfill, inside this migration's transaction, and the
-- rollups get theirs afterwards.
alter table tickets no force row level security;
insert into ticket_stats_created_daily (tenant_id, day, status, priority, n)
select tenant_id, (create_time at time zone 'UTC')::date, status, priority, count(*)
from tickets
group by 1, 2, 3, 4;
insert into ticket_stats_resolved_daily (tenant_id, day, priority, assignee_id, n)
select tenant_id, (resolve_time at time zone 'UTC')::date, priority,
       coalesce(assignee_id, '00000000-0000-0000-0000-000000000000'), count(*)
from tickets
where resolve_time is not null
group by 1, 2, 3, 4;
alter table tickets force row level security;

create trigger ticket_stats_after_insert after insert on tickets
    referencing new table as new_rows
    for each statement execute function ticket_stats_maintain();
create trigger ticket_stats_after_update after update on tickets
    referencing old table as old_rows new table as new_rows
    for each statement execute function ticket_stats_maintain();
create trigger ticket_stats_after_delete after delete on tickets
    referencing old table as old_rows
    for each statement execute function ticket_stats_maintain();

-- TRUNCATE (an operator's, as the owner: the app role may not) fires no
-- delete trigger; it empties the rollups with it.
create function ticket_stats_truncate() returns trigger
language plpgsql as $$
begin
    truncate ticket_stats_created_daily, ticket_stats_resolved_daily;
    return null;
end
$$;
create trigger ticket_stats_after_truncate after truncate on tickets
    for each statement execute function ticket_stats_truncate();

alter table ticket_stats_created_daily enable row level security;
alter table ticket_stats_created_daily force row level security;
create policy tenant_isolation on ticket_stats_created_daily
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

alter table ticket_stats_resolved_daily enable row level security;
alter table ticket_stats_resolved_daily force row level security;
create policy tenant_isolation on ticket_stats_resolved_daily
    using (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
