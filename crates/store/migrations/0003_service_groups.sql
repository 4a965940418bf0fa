-- Service groups: ports of this host that the ingress proxy publishes and
-- forwards to the primary address of the group's running instances.
CREATE TABLE service_groups (
    uuid         TEXT PRIMARY KEY,
    account      TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    -- The instance whose create made the group inline: the group goes when it goes, unless
    -- other instances joined it meanwhile.
    created_for  TEXT,
    UNIQUE (account, name)
);

-- A port of this host belongs to one group, whatever its account.
CREATE TABLE services (
    service_group     TEXT NOT NULL REFERENCES service_groups (uuid) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,
    port              INTEGER NOT NULL UNIQUE,
    destination_port  INTEGER NOT NULL,
    handlers          TEXT NOT NULL,
    PRIMARY KEY (service_group, idx)
);

-- An instance is in at most one group. The reference keeps a group with instances from
-- being deleted; the name is kept beside it, as a group is never renamed.
ALTER TABLE instances ADD COLUMN service_group TEXT REFERENCES service_groups (uuid);
ALTER TABLE instances ADD COLUMN service_group_name TEXT;

CREATE INDEX instances_service_group ON instances (service_group);

CREATE TRIGGER inline_service_group_goes_with_its_instance AFTER DELETE ON instances
BEGIN
    DELETE FROM service_groups
    WHERE created_for = OLD.uuid
      AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.service_group = service_groups.uuid);
END;
