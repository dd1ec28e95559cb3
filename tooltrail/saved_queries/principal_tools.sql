-- title: What a principal called
-- description: Tools a principal used since a time, with call counts, denies and errors.
-- param: principal text alice
-- param: since ts now-7d
select server, tool, count(*) as calls,
       count(*) filter (where decision = 'deny') as denied,
       count(*) filter (where result in ('error', 'timeout')) as errors,
       min(ts) as first_call, max(ts) as last_call
from events
where principal = $principal and ts >= $since
group by server, tool
order by calls desc
