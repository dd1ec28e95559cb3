-- title: Open alerts
-- description: Alerts nobody has acknowledged yet, most severe first.
select alert_id, severity, rule_id, title, principal, session, match_count, first_seen, last_seen
from alerts
where status = 'open'
order by case severity when 'critical' then 4 when 'high' then 3 when 'medium' then 2 else 1 end desc, last_seen desc
