-- title: Denied scopes per principal
-- description: Which scopes each principal was refused since a time - probing shows as many distinct scopes.
-- param: since ts now-24h
select principal, scope_checked, count(*) as denied, count(distinct tool) as tools,
       min(ts) as first_denied, max(ts) as last_denied
from events
where decision = 'deny' and ts >= $since
group by principal, scope_checked
order by denied desc, principal
