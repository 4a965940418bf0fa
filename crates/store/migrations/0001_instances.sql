-- Instances and their network interfaces. Uniqueness that the rules need is enforced here
-- as well as in the controller, so that no race can hand out a name, TAP device, address or
-- MAC twice.
CREATE TABLE instances (
    uuid          TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    name          TEXT NOT NULL,
    state         TEXT NOT NULL,
    image         TEXT NOT NULL,
    args          TEXT NOT NULL,
    env           TEXT NOT NULL,
    memory_mb     INTEGER NOT NULL,
    vcpus         INTEGER NOT NULL,
    gateway       TEXT,
    nameserver    TEXT,
    created_at    TEXT NOT NULL,
    pid           INTEGER,
    exit_code     INTEGER,
    boot_time_us  INTEGER,
    net_time_us   INTEGER,
    UNIQUE (account, name)
);

CREATE TABLE interfaces (
    uuid        TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    instance    TEXT NOT NULL REFERENCES instances (uuid) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    ip          TEXT,
    tap_name    TEXT NOT NULL UNIQUE,
    mac         TEXT NOT NULL UNIQUE,
    pool_addr   TEXT UNIQUE,
    autoconfig  INTEGER NOT NULL,
    relay_name  TEXT,
    relay_dns   INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account, name),
    UNIQUE (instance, idx)
);

CREATE INDEX interfaces_instance ON interfaces (instance);
