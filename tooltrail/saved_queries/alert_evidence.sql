-- title: Evidence events of an alert
-- description: The events an alert cites, in event order, with their chain position and hash.
-- param: alert_id text
select e.ts, e.principal, e.agent, e.session, e.server, e.tool, e.decision, e.result, e.reason,
       e.chain_id, e.seq, e.hash, e.event_id
from events e
where e.event_id in (
  select unnest(cast(json_extract_string(evidence, '$[*].event_id') as varchar[])) from alerts where alert_id = $alert_id)
order by e.ts, e.chain_id, e.seq
