-- Seeds one tenant's tickets for the Stats benchmark, set-based, as the
-- owner role. Parameters: $1 tenant id, $2 number of tickets, $3 "now",
-- $4 days of history. The tenant's users must exist (assignees and
-- reporters are drawn from them).
--
-- The spread resembles a working helpdesk: creation uniform over the
-- history; the older a ticket, the likelier it is resolved or closed
-- (the open backlog is mostly recent); time to resolve log-uniform between
-- 10 minutes and 30 days; priorities 20/55/20/5 % low/normal/high/urgent;
-- 8 % unassigned, the rest skewed towards a few busy agents; 0 to 2 tags
-- out of 20, the first of them skewed (`billing` is on about a quarter of
-- the tickets). Rows are inserted in creation order, as a live system
-- would write them, and ids are UUIDv7-like (time prefix).
insert into tickets (tenant_id, id, title, description, status, priority, assignee_id, reporter_id,
                     tags, create_time, update_time, resolve_time, version)
with people as (
    select array_agg(id order by id) as ids, count(*)::int as n from users where tenant_id = $1
),
names as (
    select array['billing', 'login', 'bug', 'feature', 'hardware', 'network', 'vpn', 'email', 'printer',
                 'mobile', 'api', 'security', 'onboarding', 'refund', 'outage', 'performance', 'ui', 'docs',
                 'sso', 'export'] as tags
),
g as (
    select i,
           $3::timestamptz - random() * ($4::int * interval '1 day') as ct,
           random() as r_status, random() as r_prio, random() as r_assignee, random() as r_reporter,
           random() as r_tags, random() as r_tag1, random() as r_tag2, random() as r_ttr, random() as r_cap
    from generate_series(1, $2::int) as i
),
s as (
    select g.*,
           case
               when $3::timestamptz - ct < interval '14 days' then
                   case when r_status < 0.40 then 'open' when r_status < 0.65 then 'in_progress'
                        when r_status < 0.75 then 'waiting' when r_status < 0.90 then 'resolved' else 'closed' end
               when $3::timestamptz - ct < interval '90 days' then
                   case when r_status < 0.05 then 'open' when r_status < 0.10 then 'in_progress'
                        when r_status < 0.15 then 'waiting' when r_status < 0.40 then 'resolved' else 'closed' end
               else
                   case when r_status < 0.01 then 'open' when r_status < 0.015 then 'in_progress'
                        when r_status < 0.02 then 'waiting' when r_status < 0.10 then 'resolved' else 'closed' end
           end as status,
           -- log-uniform between 10 minutes and 30 days
           interval '10 minutes' * exp(r_ttr * ln(4320.0)) as ttr
    from g
)
select $1,
       (lpad(to_hex((extract(epoch from ct) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(i::text || r_cap::text), 1, 3) || '8' || substr(md5(r_ttr::text || i::text), 1, 15))::uuid,
       'Seeded ticket ' || i,
       '',
       status,
       case when r_prio < 0.20 then 'low' when r_prio < 0.75 then 'normal' when r_prio < 0.95 then 'high'
            else 'urgent' end,
       case when r_assignee < 0.08 then null
            else people.ids[1 + floor(power((r_assignee - 0.08) / 0.92, 1.5) * people.n)::int] end,
       people.ids[1 + floor(r_reporter * people.n)::int],
       case when r_tags < 0.20 then '{}'::text[]
            when r_tags < 0.70 then array[names.tags[1 + floor(power(r_tag1, 2) * 10)::int]]
            else array[names.tags[1 + floor(power(r_tag1, 2) * 10)::int], names.tags[11 + floor(r_tag2 * 10)::int]]
       end,
       ct,
       coalesce(rt, ct),
       rt,
       1
from (
    select s.*,
           case when status in ('resolved', 'closed') then
               -- never after now
               case when ct + ttr <= $3::timestamptz then ct + ttr else ct + ($3::timestamptz - ct) * r_cap end
           end as rt
    from s
) as t, people, names
order by ct
