-- Port announcements: the services of the last announcement by the guest of
-- the current run, as a JSON array of "tcp:<port>" strings, sorted; NULL before the first one
-- and after the guest exits. The first one that holds any sets net_time_us (0001).
ALTER TABLE instances ADD COLUMN announced_services TEXT;
