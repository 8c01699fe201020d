//! WebAssembly plugins against a real broker: registration of the example plugins (built to
//! wasm by scripts/build-plugins) through the CLI and the SDK, clear errors for modules that
//! are not plugins, and the registry surviving a crash.

use weir_e2e::{Broker, example_plugin, lines};

const EXAMPLES: [(&str, &str); 5] = [
    ("count-by-key", "aggregate"),
    ("filter-contains", "filter"),
    ("json-threshold", "filter_map"),
    ("split-words", "flat_map"),
    ("uppercase", "map"),
];

#[test]
fn example_plugins_register_list_survive_a_crash_and_delete() {
    let mut broker = Broker::start();
    for (name, kind) in EXAMPLES {
        let path = example_plugin(name);
        let out = broker.cli_ok(&["plugin", "register", name, path.to_str().unwrap()]);
        assert!(
            out.starts_with(&format!("registered plugin {name} ({kind}, ")),
            "{out}"
        );
    }
    let listed = broker.cli_ok(&["plugin", "list"]);
    let kinds: Vec<(String, String)> = lines(&listed)
        .iter()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string())
        })
        .collect();
    let want: Vec<(String, String)> = EXAMPLES
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(kinds, want);

    // Same name again: refused, the first stays.
    let again = broker.cli(&[
        "plugin",
        "register",
        "uppercase",
        example_plugin("uppercase").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    broker.kill9();
    broker.restart();
    assert_eq!(broker.cli_ok(&["plugin", "list"]), listed);
    broker.cli_ok(&["plugin", "delete", "uppercase"]);
    assert_eq!(lines(&broker.cli_ok(&["plugin", "list"])).len(), 4);
    let gone = broker.cli(&["plugin", "delete", "uppercase"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_are_not_plugins_get_clear_errors_and_the_broker_keeps_serving() {
    let broker = Broker::start();
    let admin = broker.client().await.admin();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("garbage", b"\0asm garbage".to_vec(), "not a valid WebAssembly module"),
        (
            "io",
            wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#).unwrap(),
            "imports wasi_snapshot_preview1::fd_write",
        ),
        (
            "empty",
            wat::parse_str("(module)").unwrap(),
            "does not export its memory",
        ),
        (
            "bad.name/x",
            wat::parse_str("(module)").unwrap(),
            "may only contain",
        ),
    ];
    for (name, wasm, why) in cases {
        match admin.register_plugin(name, wasm).await {
            Err(weir::Error::InvalidArgument { message }) => {
                assert!(message.contains(why), "{name}: {message}")
            }
            other => panic!("{name}: expected InvalidArgument, got {other:?}"),
        }
    }
    // The CLI says the same in one line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    let out = broker.cli(&["plugin", "register", "bad", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("not a valid WebAssembly"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1);
    assert!(admin.list_plugins().await.unwrap().is_empty());
    assert!(matches!(
        admin.delete_plugin("garbage").await,
        Err(weir::Error::PluginNotFound(_))
    ));
    // Still serving.
    admin
        .create_topic(weir::NewTopic::new("still-here", 1))
        .await
        .unwrap();
}

#[test]
fn plugin_new_writes_a_template_per_kind_that_builds_and_registers() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    // Share the example plugins' target dir: std for wasm32 is built there already.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    for kind in ["filter", "map", "filter-map", "flat-map", "aggregate"] {
        let name = format!("my-{kind}");
        let weir = |args: &[&str]| {
            let out = std::process::Command::new(weir_e2e::bin("weir"))
                .args(args)
                .current_dir(dir.path())
                .env("CARGO_TARGET_DIR", &target)
                .env("WEIR_BROKER", &broker.addr)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "weir {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        weir(&["plugin", "new", &name, "--kind", kind]);
        let built = weir(&["plugin", "build", &name]);
        let wasm = built.lines().last().unwrap().to_string();
        assert!(wasm.ends_with(".wasm"), "{built}");
        let out = weir(&["plugin", "register", &name, &wasm]);
        let want = kind.replace('-', "_");
        assert!(out.contains(&format!("({want}, ")), "{out}");
    }
}
