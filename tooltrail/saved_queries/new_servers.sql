-- title: Servers first seen recently
-- description: MCP servers (and their tools) whose first call is after a time - new integrations or shadow servers.
-- param: since ts now-7d
select server, min(ts) as first_seen, count(*) as calls, count(distinct principal) as principals,
       list(distinct tool order by tool) as tools
from events
group by server
having min(ts) >= $since
order by first_seen desc
