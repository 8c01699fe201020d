"""The console in a real browser, against a real broker: every page a person uses, the
actions on them, and the safety rules (escaping, CSRF, logins, read-only)."""

from __future__ import annotations

import pathlib
import time
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.support.ui import Select

import weir
import threading

from conftest import Broker, Browser, Console, plugin_wasm, start_cluster


def rows(b: Browser, table: str) -> list[list[str]]:
    return [[td.text for td in tr.find_elements("css selector", "td")]
            for tr in b.all(f"{table} tbody tr")]


def test_overview_create_topic_produce_and_browse(broker: Broker, console: Console, browser: Browser) -> None:
    b = browser
    b.open("/")
    assert "Overview" in b.text("h1")
    assert "standalone" in b.text("body")
    b.shot("overview")

    # Create a topic from the page.
    b.open("/topics")
    b.type("#topic-name", "orders")
    b.type("#topic-partitions", "3")
    b.click("#create-topic-submit")
    b.wait_text("#notice", "created topic orders")
    assert b.text("#topic-title") == "orders"
    assert len(b.all("#partitions tbody tr")) == 3
    assert len(weir.Client(broker.addr).describe_topic("orders").partitions) == 3

    # Produce from the page: key, value, a header.
    b.click("#produce")
    b.type("#key", "customer-7")
    b.type("#value", '{"id": 7, "total": 12.5}')
    b.type("#headers", "source=console")
    b.click("#produce-submit")
    b.wait_text("#notice", "produced to partition")
    got = rows(b, "#records")
    assert len(got) == 1
    partition, offset, _ts, key, headers, value = got[0]
    assert key == "customer-7" and "source" in headers and "console" in headers
    assert '"total": 12.5' in value  # pretty JSON
    # The record is where Weir's partitioner puts its key, as every client agrees.
    assert int(partition) == weir.partition_for_key(b"customer-7", 3)

    # More records through the SDK, then browse them from the topic page.
    c = weir.Client(broker.addr)
    with c.producer() as p:
        for i in range(30):
            p.send("orders", f"order {i}".encode(), key=f"k{i}".encode())
    b.open("/topics/orders")
    b.shot("topic")
    b.click("#browse")
    b.wait("#records")
    assert "31 records" in b.text("#summary")
    assert "end of the topic reached" in b.text("#summary")
    # From a time: everything is newer than 2000; nothing is older than now + a day.
    b.open("/topics/orders/messages?from=time&time=2000-01-01T00:00")
    assert "31 records" in b.text("#summary")
    tomorrow = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 86400))
    b.open(f"/topics/orders/messages?from=time&time={tomorrow}")
    assert b.text("#summary").startswith("0 records")
    # Bad input is a readable error, not a blank page.
    b.open("/topics/orders/messages?from=time&time=yesterday")
    assert "YYYY-MM-DD" in b.text("#error")
    b.open("/topics/orders/messages?partition=9")
    assert "has no partition 9" in b.text("#error")
    # One partition, from an offset, a page of 5, then the next page.
    b.open("/topics/orders/messages?partition=0&from=earliest&limit=5")
    first = rows(b, "#records")
    assert len(first) == 5 and all(r[0] == "0" for r in first)
    b.click("#next-page")
    b.wait("#records")
    second = rows(b, "#records")
    assert [int(r[1]) for r in second][:1] == [int(first[-1][1]) + 1]
    b.shot("messages")


def test_untrusted_record_contents_are_shown_as_text(broker: Broker, console: Console, browser: Browser) -> None:
    c = weir.Client(broker.addr)
    c.create_topic("evil")
    with c.producer() as p:
        p.send("evil", b"<script>window.__pwned = 1</script>", key=b"<b>k</b>",
               headers={"<i>h": b"<img src=x onerror=\"window.__pwned=2\">"})
        p.send("evil", bytes([0xff, 0x00, 0x41, 0x80]))
    b = browser
    b.open("/topics/evil/messages")
    b.wait("#records")
    text = b.text("#records")
    assert "<script>window.__pwned = 1</script>" in text
    assert "<img src=x" in text
    assert b.driver.execute_script("return window.__pwned === undefined")
    assert not b.all("#records script") and not b.all("#records img") and not b.all("#records b")
    # Binary values are a hex dump.
    assert "ff 00 41 80" in text


def test_filters_run_in_the_broker(broker: Broker, console: Console, browser: Browser) -> None:
    c = weir.Client(broker.addr)
    c.create_topic("logs", partitions=2)
    with c.producer() as p:
        for i in range(2000):
            p.send("logs", (f"ERROR disk {i}" if i % 200 == 0 else f"ok {i}").encode(), key=str(i).encode())
    c.register_plugin("keep", plugin_wasm("filter-contains"))
    b = browser
    # A registered plugin with params, picked in the form.
    b.open("/topics/logs/messages")
    Select(b.find("#plugin")).select_by_visible_text("keep")
    b.type("#params", '{"substring": "ERROR"}')
    b.click("#browse-submit")
    b.wait("#summary")
    values = [r[5] for r in rows(b, "#records")]
    assert len(values) == 10 and all(v.startswith("ERROR disk") for v in values), values
    # The substring box: the built-in plugin, registered on first use.
    b.open("/topics/logs/messages?contains=disk%201800")
    values = [r[5] for r in rows(b, "#records")]
    assert values == ["ERROR disk 1800"]
    assert any(p.name == "console.contains" for p in c.list_plugins())


def test_live_tail_shows_records_produced_after_the_page_opened(broker: Broker, console: Console, browser: Browser) -> None:
    c = weir.Client(broker.addr)
    c.create_topic("live", partitions=2)
    b = browser
    b.open("/topics/live/messages")
    b.click("#tail-start")
    b.wait_text("#tail-status", "following")
    time.sleep(1.0)  # the tail subscribes at the latest offset
    with c.producer() as p:
        p.send("live", b"hello from after the page opened", key=b"x")
    b.wait_text("#records-body", "hello from after the page opened")
    b.click("#tail-stop")
    b.wait_text("#tail-status", "stopped")


def test_group_lag_goes_to_zero_and_offsets_reset(broker: Broker, console: Console, browser: Browser) -> None:
    c = weir.Client(broker.addr)
    c.create_topic("events")
    with c.producer() as p:
        for i in range(50):
            p.send("events", f"e{i}".encode())
    consumer = c.consumer("events", group="billing", start="earliest", idle_timeout_ms=2000)
    for n, _ in enumerate(consumer, 1):
        if n == 20:
            break
    consumer.commit()
    consumer.close()
    b = browser
    b.open("/groups")
    name, _state, members, lag = rows(b, "#groups")[0]
    assert (name, members, lag) == ("billing", "0", "30")
    b.open("/groups/billing")
    assert b.text("#group-lag") == "30"
    b.shot("group")
    # The consumer catches up: lag 0.
    caught_up = c.consumer("events", group="billing", start="earliest", idle_timeout_ms=1500)
    assert len(list(caught_up)) == 30
    caught_up.commit()
    caught_up.close()
    b.open("/groups/billing")
    assert b.text("#group-lag") == "0"
    # Reset to earliest, with the confirmation.
    Select(b.find("#reset-to")).select_by_value("earliest")
    b.type("form.danger input.confirm", "wrong-name")
    b.click("form.danger button")
    b.wait_text("#error", "type \"billing\" to confirm")
    b.open("/groups/billing")
    Select(b.find("#reset-to")).select_by_value("earliest")
    b.type("form.danger input.confirm", "billing")
    b.click("form.danger button")
    b.wait_text("#notice", "reset 1 partition(s) of events")
    assert b.text("#group-lag") == "50"


def test_upload_a_plugin_try_it_and_run_a_pipeline(broker: Broker, console: Console, browser: Browser) -> None:
    c = weir.Client(broker.addr)
    c.create_topic("words")
    c.create_topic("loud")
    with c.producer() as p:
        for w in ("alpha", "beta", "gamma"):
            p.send("words", w.encode())
    b = browser
    b.open("/plugins")
    b.type("#plugin-name", "upper")
    b.find("#plugin-file").send_keys(str(plugin_wasm("uppercase")))
    b.click("#upload-submit")
    b.wait_text("#notice", "registered plugin upper (map, version 1)")
    assert "upper" in b.text("#plugins")
    b.shot("plugins")
    # Bad input: not WebAssembly.
    bad = pathlib.Path(broker.data_dir).parent / "bad.wasm"
    bad.write_bytes(b"not wasm at all")
    b.type("#plugin-name", "broken")
    b.find("#plugin-file").send_keys(str(bad))
    b.click("#upload-submit")
    assert "not a valid WebAssembly module" in b.wait("#error").text  # the broker's reason
    # Try it on the first records of a topic.
    b.open("/plugins/upper/try")
    Select(b.find("#try-topic")).select_by_value("words")
    b.click("#try-submit")
    b.wait("#try-output")
    assert [r[2] for r in rows(b, "#try-output")] == ["ALPHA", "BETA", "GAMMA"]
    assert [r[2] for r in rows(b, "#try-input")] == ["alpha", "beta", "gamma"]
    b.shot("plugin-try")
    # A pipeline from the page.
    b.open("/pipelines")
    b.type("#pipeline-name", "shout")
    b.type("#pipeline-from", "words")
    b.type("#pipeline-to", "loud")
    b.type("#pipeline-plugins", "upper")
    b.click("#create-pipeline-submit")
    b.wait_text("#pipeline-status", "running")
    deadline = time.time() + 20
    while time.time() < deadline:
        b.open("/pipelines/shout")
        if rows(b, "#pipeline-partitions")[0][5] == "3":
            break
        time.sleep(0.5)
    assert rows(b, "#pipeline-partitions")[0][5] == "3"
    b.shot("pipeline")
    got = [r.value for r in c.consumer("loud", start="earliest", idle_timeout_ms=1500)]
    assert got == [b"ALPHA", b"BETA", b"GAMMA"]


def test_broker_errors_are_readable_pages(broker: Broker, console: Console, browser: Browser) -> None:
    b = browser
    b.open("/topics/missing")
    assert "missing" in b.text("#error")
    b.open("/topics/missing/messages")
    assert "missing" in b.text("#error")
    b.open("/no/such/page")
    assert b.text("#error") == "no such page"
    # A form replayed without its CSRF token is refused and changes nothing.
    req = urllib.request.Request(console.url + "/topics", data=b"csrf=forged&name=x&partitions=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req)
    assert refused.value.code == 403
    assert "x" not in weir.Client(broker.addr).list_topics()


def test_logins_and_what_each_user_may_see(tmp_path: pathlib.Path) -> None:
    broker = Broker(tmp_path / "data", "--auth")
    console = Console(broker)
    b = Browser(console.url)
    try:
        root = ("--token", (tmp_path / "data" / "admin.token").read_text().strip())
        broker.cli(*root, "topic", "create", "orders")
        broker.cli(*root, "user", "add", "reader", "--password-stdin", stdin="reader-pass\n")
        broker.cli(*root, "acl", "grant", "reader", "read", "--topic", "orders")

        b.open("/")
        b.wait("#login")  # sent to the login page
        b.shot("login")
        b.type("#user", "reader")
        b.type("#password", "wrong")
        b.click("#login")
        assert "wrong user name, password or token" in b.text("#login-error")

        b.type("#user", "reader")
        b.type("#password", "reader-pass")
        b.click("#login")
        b.wait("#user-name")
        assert b.text("#user-name") == "reader"
        b.open("/topics")
        assert "orders" in b.text("#topics")
        assert not b.has("#create-topic"), "a reader sees no create form"
        b.open("/topics/orders")
        assert not b.has("#produce") and not b.has("form.danger"), "nor produce or delete"
        b.open("/plugins")
        assert not b.has("#upload-plugin")
        b.open("/security")
        assert "reader" in b.text("#whoami") and "orders" in b.text("#acls")
        cookie = b.driver.get_cookie("weir_session")
        assert cookie is not None and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"
        b.click("#logout")
        b.wait("#login")

        # A superuser (token) sees every action, and the users and ACLs.
        b.type("#token", root[1])
        b.click("#login")
        b.wait("#user-name")
        b.open("/topics")
        assert b.has("#create-topic")
        b.open("/security")
        assert "reader" in b.text("#users")
        b.shot("security")
    finally:
        b.quit()
        console.stop()
        broker.stop()


def test_read_only_console_hides_and_refuses_changes(broker: Broker, tmp_path: pathlib.Path) -> None:
    weir.Client(broker.addr).create_topic("orders")
    console = Console(broker, "--read-only")
    b = Browser(console.url)
    try:
        b.open("/topics")
        assert b.has("#read-only")
        assert not b.has("#create-topic")
        b.open("/topics/orders")
        assert b.has("#browse") and not b.has("#produce") and not b.has("form.danger")
        b.open("/groups")
        b.open("/plugins")
        assert not b.has("#upload-plugin")
    finally:
        b.quit()
        console.stop()


def test_overview_charts_rates_and_lists_groups_and_pipelines(broker: Broker, console: Console, browser: Browser) -> None:
    """A busy broker: the overview's totals, groups with lag, the rates chart (the console
    samples offsets every 5 s, so this test produces for a while), and the list pages."""
    c = weir.Client(broker.addr)
    c.create_topic("orders", partitions=3)
    c.create_topic("orders.eu", partitions=3)
    c.register_plugin("upper", plugin_wasm("uppercase"))
    c.register_plugin("keep", plugin_wasm("filter-contains"))
    stop = threading.Event()

    def produce() -> None:
        with c.producer() as p:
            i = 0
            while not stop.is_set():
                for _ in range(200):
                    p.send("orders", f'{{"order": {i}, "country": "{"FR" if i % 3 else "DE"}"}}'.encode(),
                           key=f"customer-{i % 50}".encode(), headers={"source": b"web"})
                    i += 1
                p.flush()
                time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        consumer = c.consumer("orders", group="billing", start="earliest", idle_timeout_ms=1000)
        for n, _ in enumerate(consumer, 1):
            if n == 500:
                break
        consumer.commit()
        consumer.close()
        c.create_pipeline("eu-upper", "orders", "orders.eu", plugins=[("upper", None)])
        b = browser
        deadline = time.time() + 30
        while time.time() < deadline:
            b.open("/")
            if b.has("#rates svg polyline.produced"):
                break
            time.sleep(1)
        assert b.has("#rates svg polyline.produced"), b.text("#rates")
        points = b.find("#rates polyline.produced").get_attribute("points") or ""
        assert len(points.split()) >= 2, points  # a visible line
        caption = b.text("#rates figcaption")
        assert "produced" in caption and "produced 0.0/s" not in caption, caption
        assert "billing" in b.text("#groups")
        assert "1 running" in b.text("#card-pipelines")
        b.shot("overview")
        b.open("/topics")
        assert "orders.eu" in b.text("#topics")
        b.shot("topics")
        b.open("/topics/orders/produce")
        b.shot("produce")
        b.open("/groups")
        b.shot("groups")
        b.open("/pipelines")
        assert "eu-upper" in b.text("#pipelines")
        b.shot("pipelines")
    finally:
        stop.set()
        producer.join()


def test_a_cluster_shows_its_members_placement_and_problems(tmp_path: pathlib.Path) -> None:
    brokers = start_cluster(tmp_path, 3)
    console = Console(brokers[0])
    b = Browser(console.url)
    try:
        c = weir.Client(",".join(x.addr for x in brokers))
        deadline = time.time() + 30
        while True:
            try:
                c.create_topic("replicated", partitions=3, replication_factor=3)
                break
            except weir.WeirError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        b.open("/")
        assert "3 nodes, controller node" in b.text("body")
        assert len(rows(b, "#brokers")) == 3
        b.open("/topics/replicated")
        placement = rows(b, "#partitions")
        assert len(placement) == 3
        # leader, replicas, in sync
        for r in placement:
            leader, replicas, isr = r[6:9]
            assert leader in replicas.split(", ") and sorted(replicas.split(", ")) == ["1", "2", "3"], r
            assert sorted(isr.split(", ")) == ["1", "2", "3"], r
        b.shot("cluster-topic")
        brokers[2].stop()
        deadline = time.time() + 30
        while time.time() < deadline:
            b.open("/")
            if b.has("#problems") and "node 3" in b.text("#problems"):
                break
            time.sleep(1)
        assert "node 3" in b.text("#problems") and "unreachable" in b.text("#problems")
        b.shot("cluster-problem")
    finally:
        b.quit()
        console.stop()
        for x in brokers:
            x.stop()
