-- title: Quarantined input
-- description: Rejected events kept for review, newest first, with the field and the reason.
select *
from quarantine
order by 1 desc
