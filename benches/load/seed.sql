-- Seeds one tenant's tickets for the load benchmark, set-based, as the owner.
-- Parameters: $1 tenant id, $2 the tenant's number (1, 2), $3 tickets,
-- $4 epoch milliseconds of ticket 0, $5 milliseconds between tickets.
--
-- Ticket n (1..$3) is created at $4 + n * $5 ms, and its id is derivable
-- from n, so the benchmark and pgbench can pick a random seeded ticket
-- without a list: a UUIDv7 layout whose 48-bit time prefix is the creation
-- time, then the version nibble 7, the tenant's number in 12 bits, the
-- variant nibble 8 and n in 60 bits. Descriptions are about 300 bytes; the
-- statuses, priorities, assignees and tags vary; the stats rollup triggers
-- fire as for any insert. The tenant's users must exist.
insert into tickets (tenant_id, id, title, description, status, priority, assignee_id, reporter_id,
                     tags, create_time, update_time, resolve_time, version)
with people as (
    select array_agg(id order by id) as ids, count(*)::int as np from users where tenant_id = $1
),
words as (
    select array['billing', 'login', 'bug', 'feature', 'hardware', 'network', 'vpn', 'email', 'printer',
                 'mobile', 'api', 'security', 'onboarding', 'refund', 'outage', 'sso'] as tags,
           array['Cannot sign in after the password reset', 'Invoice shows the wrong VAT rate',
                 'Export to CSV never finishes', 'Printer on the third floor is offline',
                 'VPN drops every ten minutes', 'Mobile app crashes on start',
                 'Webhook deliveries are delayed', 'Please add a dark mode'] as titles
),
g as (
    select n, $4::bigint + n * $5::bigint as ms,
           random() as r_status, random() as r_prio, random() as r_assignee, random() as r_reporter,
           random() as r_tags, random() as r_resolve
    from generate_series(1, $3::int) as n
),
t as (
    select g.*, to_timestamp(ms / 1000.0) as ct,
           case when r_status < 0.15 then 'open' when r_status < 0.25 then 'in_progress'
                when r_status < 0.30 then 'waiting' when r_status < 0.75 then 'resolved' else 'closed' end as status
    from g
)
select $1,
       (lpad(to_hex(ms), 12, '0') || '7' || lpad(to_hex($2::int), 3, '0') || '8' || lpad(to_hex(n), 15, '0'))::uuid,
       words.titles[1 + n % 8] || ' (#' || n || ')',
       'Customer reports: since the last update the reports page shows an error right after signing in. '
           || 'Steps: open the dashboard, choose Reports, pick last month and press Export. Expected a CSV '
           || 'file; got a spinner and then "something went wrong". Browser: Firefox 133 on Windows 11. '
           || 'Three colleagues are affected; no workaround yet. Reference ' || n || '.',
       status,
       case when r_prio < 0.20 then 'low' when r_prio < 0.75 then 'normal' when r_prio < 0.95 then 'high'
            else 'urgent' end,
       case when r_assignee < 0.08 then null else people.ids[1 + floor(r_assignee * people.np)::int] end,
       people.ids[1 + floor(r_reporter * people.np)::int],
       case when r_tags < 0.30 then '{}'::text[]
            when r_tags < 0.80 then array[words.tags[1 + floor(r_tags * 97)::int % 8]]
            else array[words.tags[1 + floor(r_tags * 97)::int % 8], words.tags[9 + floor(r_resolve * 89)::int % 8]]
       end,
       ct,
       coalesce(rt, ct),
       rt,
       1
from (
    select t.*,
           case when status in ('resolved', 'closed')
                then least(ct + r_resolve * interval '3 days', now()) end as rt
    from t
) as x, people, words
order by n
