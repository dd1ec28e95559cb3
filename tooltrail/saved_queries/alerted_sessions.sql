-- title: Sessions with alerts
-- description: Sessions that raised alerts since a time: how many, the worst severity and the rules.
-- param: since ts now-7d
select session, principal, count(*) as alerts,
       max(case severity when 'critical' then 4 when 'high' then 3 when 'medium' then 2 else 1 end) as worst,
       list(distinct rule_id order by rule_id) as rules, min(first_seen) as first_seen, max(last_seen) as last_seen
from alerts
where session is not null and last_seen >= $since
group by session, principal
order by worst desc, last_seen desc
