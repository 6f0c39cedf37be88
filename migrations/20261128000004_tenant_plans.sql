-- Rate-limit plans: a tenant's plan names quotas in the configuration; its
-- own `rate_limits` (JSON: {"tenant": {...}, "principal": {...},
-- "service_principal": {...}}, each {"requests", "period", "burst"}) override them.
alter table tenants add column plan text not null default 'default'
    check (char_length(plan) between 1 and 64);
alter table tenants add column rate_limits jsonb
    check (rate_limits is null or jsonb_typeof(rate_limits) = 'object');
