-- title: Who called a tool
-- description: Principals that called one tool since a time, with outcomes and first / last call.
-- param: tool text
-- param: since ts now-7d
select principal, count(*) as calls,
       count(*) filter (where decision = 'deny') as denied,
       count(*) filter (where result in ('error', 'timeout')) as errors,
       count(distinct session) as sessions, min(ts) as first_call, max(ts) as last_call
from events
where tool = $tool and ts >= $since
group by principal
order by calls desc, principal
