//! The admin look-ups (`show-login`, `show-port`, `show-room`): their text, directly and through
//! the `chatd` binary over an SQLite file.

mod support;

use std::process::Command;

use chatd::admin::{show_login, show_port, show_room, AdminError};
use support::*;

#[tokio::test]
async fn show_login_prints_port_last_address_presence_and_rooms() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    add_message(&*state.store, &seeded.room, "bob@b.example", "hi", 1_000).await;
    let now = state.clock.now_ms();
    let out = show_login(&*state.store, "alice@a.example", now)
        .await
        .expect("known login");
    for needle in [
        "login:     alice@a.example".to_owned(),
        format!("port:      {} (granted 2024-05-01 12:34 UTC", seeded.port),
        "last seen: 2024-05-01 12:34 UTC from IP 192.0.2.10, hostname client.a.example".to_owned(),
        "online:    no".to_owned(),
        "rooms:     1".to_owned(),
        format!("  {}  port {}", seeded.room, seeded.port),
        "unread 1  \"Quarterly numbers\"".to_owned(),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in\n{out}");
    }
    state
        .store
        .set_presence("alice@a.example", "node1", 1, now + 60_000)
        .await
        .expect("presence stored");
    let out = show_login(&*state.store, "alice@a.example", now)
        .await
        .expect("known login");
    assert!(out.contains("online:    yes"), "{out}");
    assert!(matches!(
        show_login(&*state.store, "nobody", now).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn show_port_prints_its_login() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let out = show_port(&*state.store, seeded.port)
        .await
        .expect("granted");
    assert!(
        out.contains(&format!("port:      {}", seeded.port)),
        "{out}"
    );
    assert!(out.contains("login:     alice@a.example"), "{out}");
    let free = if seeded.port == 65535 {
        1
    } else {
        seeded.port + 1
    };
    assert!(matches!(
        show_port(&*state.store, free).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn show_room_prints_participants_messages_ring_and_reminder() {
    let (state, _) = state().await;
    let seeded = alice_room(&*state.store).await;
    let now = state.clock.now_ms();
    let store = &*state.store;
    store
        .join_room(&seeded.room, "bob@b.example", now - 5_000)
        .await
        .expect("joined");
    add_message(store, &seeded.room, "bob@b.example", "one", now - 4_000).await;
    add_message(store, &seeded.room, "bob@b.example", "two", now - 3_000).await;
    let out = show_room(store, &seeded.room, now).await.expect("room");
    for needle in [
        format!("room:      {}", seeded.room),
        format!("port:      {}", seeded.port),
        "login:     alice@a.example".to_owned(),
        "subject:   \"Quarterly numbers\"".to_owned(),
        "participants: 3".to_owned(),
        "from alice@a.example".to_owned(),
        "to   bob@b.example  joined".to_owned(),
        "cc   carol@c.example  not joined".to_owned(),
        "messages:  2".to_owned(),
        "ring:      none ringing".to_owned(),
        "reminder:  none".to_owned(),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in\n{out}");
    }
    store
        .start_ring(&seeded.room, "bob@b.example", now - 2_000)
        .await
        .expect("ring");
    store
        .schedule_reminder(&seeded.room, "bob@b.example", now + 60_000)
        .await
        .expect("reminder");
    let out = show_room(store, &seeded.room, now).await.expect("room");
    assert!(
        out.contains("ring:      ringing, called by bob@b.example"),
        "{out}"
    );
    assert!(out.contains("reminder:  pending, due"), "{out}");
    assert!(out.contains("caller bob@b.example; 0 sent"), "{out}");
    assert!(matches!(
        show_room(store, "nosuchroom", now).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn the_binary_runs_the_admin_commands_on_the_configured_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("chmail.db").display());
    let store = chmail::open_store(&url, 1).await.expect("store opens");
    store.migrate().await.expect("migrated");
    let seeded = alice_room(&*store).await;
    drop(store);

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(args)
            .env("CHMAIL_STORE_URL", &url)
            .env_remove("CHMAIL_CONFIG")
            .output()
            .expect("chatd runs")
    };
    let out = run(&["show-room", &seeded.room]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("room:      {}", seeded.room)),
        "{text}"
    );
    let out = run(&["show-login", "alice@a.example"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("online:    no"));
    let out = run(&["show-port", &seeded.port.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("login:     alice@a.example"));
    let out = run(&["show-room", "nosuchroom"]);
    assert!(!out.status.success(), "an unknown room is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no room"));
}
