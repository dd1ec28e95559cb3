-- title: Busiest principals
-- description: Call volume, deny rate and distinct tools per principal since a time.
-- param: since ts now-7d
select principal, count(*) as calls,
       round(100.0 * count(*) filter (where decision = 'deny') / count(*), 2) as deny_pct,
       count(distinct tool) as tools, count(distinct session) as sessions
from events
where ts >= $since
group by principal
order by calls desc
