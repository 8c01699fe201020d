//! The cluster's network: one network namespace per broker and one for the clients, each
//! joined by a veth pair to a bridge in a namespace of its own, with addresses in
//! `10.99.0.0/24` that exist only inside those namespaces. Nothing is routed anywhere else:
//! the namespaces have no route out, and the machine's own namespace gets no interface.
//!
//! Faults, all undone by [`Net::heal`]:
//! - [`Net::isolate`]: a node's bridge port goes down (it reaches nobody, nobody reaches it);
//! - [`Net::drop_between`]: packets from one node to another are dropped (a blackhole route
//!   in the sender's namespace), so a partition is two of these, a one-way fault one;
//! - [`Net::lossy`]: a node drops a share of the packets it receives (nftables `numgen`);
//! - [`Net::slow`]: a node's link is throttled (`tc tbf`), so what it sends queues.
//!
//! `tc netem` (delay, reordering) is not built into this machine's kernel
//! (`CONFIG_NET_SCH_NETEM`), so delay is a throttled link and reordering is not injected.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// A failed `ip`/`tc`/`nft` command.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {stderr}")]
pub struct NetError {
    pub command: String,
    pub stderr: String,
}

/// The prefix of every namespace a run creates, followed by the run's process id.
pub const NAMESPACE_PREFIX: &str = "weir-chaos-";

/// The client namespace's address (nodes are `10.99.0.1..`).
const CLIENT_HOST: u8 = 100;

/// Runs `program args`; fails with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError {
            command: format!("{program} {}", args.join(" ")),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetError {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces of one run. Dropping it deletes them (and kills what still runs inside).
#[derive(Debug)]
pub struct Net {
    tag: String,
    nodes: u8,
    /// Whether `Drop` deletes the namespaces (false in the child process that only uses them).
    owned: bool,
}

impl Net {
    /// Creates the namespaces of `nodes` brokers and the clients, named after `tag`.
    pub fn create(tag: &str, nodes: u8) -> Result<Self, NetError> {
        let net = Self {
            tag: tag.to_string(),
            nodes,
            owned: true,
        };
        let sw = net.switch_ns();
        run("ip", &["netns", "add", &sw])?;
        net.ns(&sw, &["ip", "link", "set", "lo", "up"])?;
        net.ns(&sw, &["ip", "link", "add", "br0", "type", "bridge"])?;
        net.ns(&sw, &["ip", "link", "set", "br0", "up"])?;
        let hosts: Vec<(String, String, u8)> = (1..=nodes)
            .map(|i| (net.node_ns(i), format!("n{i}"), i))
            .chain(std::iter::once((net.client_ns(), "c".into(), CLIENT_HOST)))
            .collect();
        for (ns, port, host) in hosts {
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &port, "netns", &sw, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            )?;
            net.ns(&sw, &["ip", "link", "set", &port, "master", "br0"])?;
            net.ns(&sw, &["ip", "link", "set", &port, "up"])?;
            let addr = format!("{}/24", Self::addr_of(host));
            net.ns(&ns, &["ip", "addr", "add", &addr, "dev", "eth0"])?;
            net.ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
            net.ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The namespaces of a run another process created (not deleted when dropped).
    pub fn attach(tag: &str, nodes: u8) -> Self {
        Self {
            tag: tag.to_string(),
            nodes,
            owned: false,
        }
    }

    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    fn switch_ns(&self) -> String {
        format!("{}-sw", self.tag)
    }

    pub fn node_ns(&self, node: u8) -> String {
        format!("{}-n{node}", self.tag)
    }

    pub fn client_ns(&self) -> String {
        format!("{}-c", self.tag)
    }

    fn addr_of(host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, 0, host)
    }

    /// Node `node`'s address (brokers listen on it).
    pub fn node_addr(node: u8) -> Ipv4Addr {
        Self::addr_of(node)
    }

    /// Runs a command inside namespace `ns`.
    fn ns(&self, ns: &str, cmd: &[&str]) -> Result<String, NetError> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// `ip netns exec NS` followed by `program`: how to start a process inside node `node`.
    pub fn exec_in_node(&self, node: u8, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node_ns(node), program]);
        c
    }

    /// Cuts node `node` off from everyone.
    pub fn isolate(&self, node: u8) -> Result<(), NetError> {
        self.ns(
            &self.switch_ns(),
            &["ip", "link", "set", &format!("n{node}"), "down"],
        )
        .map(drop)
    }

    /// Drops every packet node `from` sends to node `to` (not the other way).
    pub fn drop_between(&self, from: u8, to: u8) -> Result<(), NetError> {
        let dst = format!("{}/32", Self::addr_of(to));
        self.ns(
            &self.node_ns(from),
            &["ip", "route", "replace", "blackhole", &dst],
        )
        .map(drop)
    }

    /// Node `node` drops `percent` % of the packets it receives, at random.
    pub fn lossy(&self, node: u8, percent: u8) -> Result<(), NetError> {
        let ns = self.node_ns(node);
        self.ns(&ns, &["nft", "add", "table", "inet", "weirchaos"])?;
        self.ns(
            &ns,
            &[
                "nft",
                "add",
                "chain",
                "inet",
                "weirchaos",
                "input",
                "{ type filter hook input priority 0; }",
            ],
        )?;
        let below = percent.min(100).to_string();
        self.ns(
            &ns,
            &[
                "nft",
                "add",
                "rule",
                "inet",
                "weirchaos",
                "input",
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                &below,
                "drop",
            ],
        )
        .map(drop)
    }

    /// Throttles node `node`'s link to `kbit` kbit/s (what it sends queues, up to 300 ms).
    pub fn slow(&self, node: u8, kbit: u32) -> Result<(), NetError> {
        let rate = format!("{kbit}kbit");
        self.ns(
            &self.node_ns(node),
            &[
                "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst",
                "32kbit", "latency", "300ms",
            ],
        )
        .map(drop)
    }

    /// Reorders and delays what node `node` sends: packets with an odd IP id (every other
    /// packet of a TCP connection) queue behind a 2 Mbit/s class, the others pass at once.
    /// (This kernel has no `netem`; HTB and the `u32` classifier do it.)
    pub fn reorder(&self, node: u8) -> Result<(), NetError> {
        let ns = self.node_ns(node);
        let tc = |args: &[&str]| {
            let mut all = vec!["tc"];
            all.extend_from_slice(args);
            self.ns(&ns, &all).map(drop)
        };
        tc(&[
            "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10",
            "r2q", "100000",
        ])?;
        tc(&[
            "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate",
            "10gbit",
        ])?;
        tc(&[
            "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb", "rate",
            "2mbit", "ceil", "2mbit",
        ])?;
        tc(&[
            "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "u16", "0x0001", "0x0001", "at", "4", "flowid", "1:20",
        ])
    }

    /// Undoes every network fault: links up, blackholes gone, no loss, no throttling.
    pub fn heal(&self) -> Result<(), NetError> {
        for node in 1..=self.nodes {
            let ns = self.node_ns(node);
            self.ns(
                &self.switch_ns(),
                &["ip", "link", "set", &format!("n{node}"), "up"],
            )?;
            for other in 1..=self.nodes {
                let dst = format!("{}/32", Self::addr_of(other));
                // Absent unless a fault added it.
                let _ = self.ns(&ns, &["ip", "route", "del", "blackhole", &dst]);
            }
            let _ = self.ns(&ns, &["nft", "delete", "table", "inet", "weirchaos"]);
            let _ = self.ns(&ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
        }
        Ok(())
    }

    /// Kills whatever runs in the namespaces and deletes them (errors are ignored: this is
    /// the last resort, also after a failure half-way through `create`).
    pub fn destroy(&self) {
        let names: Vec<String> = (1..=self.nodes)
            .map(|i| self.node_ns(i))
            .chain([self.client_ns(), self.switch_ns()])
            .collect();
        for ns in &names {
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
        }
        for ns in &names {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.owned {
            self.destroy();
        }
    }
}

/// Deletes the namespaces of earlier runs whose process is gone (a run killed with SIGKILL
/// cannot clean up after itself).
pub fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            if let Ok(pids) = run("ip", &["netns", "pids", name]) {
                for p in pids.split_whitespace() {
                    let _ = run("kill", &["-9", p]);
                }
            }
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}
