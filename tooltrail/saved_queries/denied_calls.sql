-- title: Denied calls
-- description: Calls the gateway refused since a time, newest first, with the scope it checked.
-- param: since ts now-7d
select ts, principal, agent, session, server, tool, scope_checked, reason
from events
where decision = 'deny' and ts >= $since
order by ts desc
