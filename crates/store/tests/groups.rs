//! Service groups in the store: ports unique on the host, members kept with their group,
//! and a group made inline going with its instance.

use std::collections::BTreeMap;

use weft_model::services::Handler;
use weft_store::{GroupRef, Instance, Service, ServiceGroup, State, Store, StoreError};

fn instance(uuid: &str, name: &str, account: &str) -> Instance {
    Instance {
        uuid: uuid.into(),
        account: account.into(),
        name: name.into(),
        state: State::Stopped,
        image: "base".into(),
        args: vec![],
        env: BTreeMap::new(),
        memory_mb: 128,
        vcpus: 1,
        gateway: None,
        nameserver: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        pid: None,
        exit_code: None,
        boot_time_us: None,
        net_time_us: None,
        services: Vec::new(),
        service_group: None,
    }
}

fn group(uuid: &str, name: &str, account: &str, ports: &[u16]) -> ServiceGroup {
    ServiceGroup {
        uuid: uuid.into(),
        account: account.into(),
        name: name.into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        created_for: None,
        services: ports
            .iter()
            .map(|&port| Service {
                port,
                destination_port: 8080,
                handlers: vec![Handler::Http, Handler::Tls],
            })
            .collect(),
        instances: vec![],
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("weft.db")).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn groups_round_trip_with_their_members() {
    let (_dir, store) = store().await;
    store
        .insert_group(&group("g1", "web", "acme", &[443, 80]), None)
        .await
        .unwrap();
    store
        .insert_instance(&instance("u1", "a", "acme"), &[])
        .await
        .unwrap();
    assert!(store.join_group("u1", "g1").await.unwrap());

    let found = store.find_group("acme", "web").await.unwrap().unwrap();
    assert_eq!(found.uuid, "g1");
    assert_eq!(
        found.services.iter().map(|s| s.port).collect::<Vec<_>>(),
        [443, 80]
    );
    assert_eq!(found.services[0].handlers, [Handler::Http, Handler::Tls]);
    assert_eq!(found.instances[0].name, "a");
    assert_eq!(store.find_group("acme", "g1").await.unwrap(), Some(found));
    assert!(store.find_group("other", "web").await.unwrap().is_none());

    let (inst, _) = store.find_instance("acme", "a").await.unwrap().unwrap();
    assert_eq!(
        inst.service_group,
        Some(GroupRef {
            uuid: "g1".into(),
            name: "web".into()
        })
    );
    let on = store.group_on_port(80).await.unwrap().unwrap();
    assert_eq!((on.1.as_str(), on.2.as_str()), ("web", "acme"));
    assert!(store.group_on_port(81).await.unwrap().is_none());
}

#[tokio::test]
async fn ports_are_unique_on_the_host_and_names_in_the_account() {
    let (_dir, store) = store().await;
    store
        .insert_group(&group("g1", "web", "acme", &[443]), None)
        .await
        .unwrap();
    let err = store
        .insert_group(&group("g2", "api", "other", &[8443, 443]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "port" }),
        "{err}"
    );
    // Nothing of the refused group stays.
    assert!(store.group_on_port(8443).await.unwrap().is_none());
    let err = store
        .insert_group(&group("g3", "web", "acme", &[8080]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                what: "service group name"
            }
        ),
        "{err}"
    );
    store
        .insert_group(&group("g4", "web", "other", &[8080]), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_group_with_members_stays_and_members_leave_with_their_instance() {
    let (_dir, store) = store().await;
    store
        .insert_group(&group("g1", "web", "acme", &[443]), None)
        .await
        .unwrap();
    store
        .insert_instance(&instance("u1", "a", "acme"), &[])
        .await
        .unwrap();
    store
        .insert_instance(&instance("u2", "b", "other"), &[])
        .await
        .unwrap();
    assert!(store.join_group("u1", "g1").await.unwrap());
    // Another account's instance cannot join; nor can anyone join a missing group.
    assert!(!store.join_group("u2", "g1").await.unwrap());
    assert!(!store.join_group("u1", "nope").await.unwrap());

    let err = store.delete_group("g1").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    store.delete_instance("u1").await.unwrap();
    assert!(store.list_groups(None).await.unwrap()[0]
        .instances
        .is_empty());
    store.delete_group("g1").await.unwrap();
    assert!(store.group_on_port(443).await.unwrap().is_none());
}

#[tokio::test]
async fn an_inline_group_goes_with_its_instance_unless_others_joined() {
    let (_dir, store) = store().await;
    for (uuid, name) in [("u1", "a"), ("u2", "b"), ("u3", "c")] {
        store
            .insert_instance(&instance(uuid, name, "acme"), &[])
            .await
            .unwrap();
    }
    let mut inline = group("g1", "a", "acme", &[443]);
    inline.created_for = Some("u1".into());
    store.insert_group(&inline, Some("u1")).await.unwrap();
    let mut shared = group("g2", "b", "acme", &[80]);
    shared.created_for = Some("u2".into());
    store.insert_group(&shared, Some("u2")).await.unwrap();
    assert!(store.join_group("u3", "g2").await.unwrap());

    store.delete_instance("u1").await.unwrap();
    store.delete_instance("u2").await.unwrap();
    let left: Vec<String> = store
        .list_groups(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(left, ["b"]);
}
