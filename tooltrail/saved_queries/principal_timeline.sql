-- title: What a principal did
-- description: Every call of one principal in a time window, in order, with the decision and outcome.
-- param: principal text
-- param: since ts now-24h
-- param: until ts now
select ts, session, agent, server, tool, decision, result, reason, scope_checked, redaction_count, event_id
from events
where principal = $principal and ts >= $since and ts < $until
order by ts, chain_id, seq
