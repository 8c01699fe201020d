//! The brokers of a run: one `weir-broker` per node namespace, started, killed, restarted,
//! paused and resumed by the driver.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::net::Net;

/// The port every broker listens on (each has an address of its own).
pub const BROKER_PORT: u16 = 9292;

/// Cluster timings for a run: failures are noticed within seconds, and leadership goes back
/// to preferred replicas every 10 s (more leader changes for the checker to judge).
const BROKER_FLAGS: &[&str] = &[
    "--session-timeout-ms",
    "3000",
    "--replica-lag-max-ms",
    "3000",
    "--leader-rebalance-interval-ms",
    "10000",
];

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start broker {node}: {source}")]
    Start { node: u8, source: std::io::Error },
    #[error("cannot signal broker {node}: {message}")]
    Signal { node: u8, message: String },
}

struct Node {
    child: Option<Child>,
    paused: bool,
}

pub struct Brokers<'a> {
    net: &'a Net,
    bin: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl<'a> Brokers<'a> {
    /// Starts one broker per node of `net`, data and logs under `dir`.
    pub fn start(net: &'a Net, bin: &Path, dir: &Path) -> Result<Self, BrokerError> {
        let mut b = Self {
            net,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            nodes: (0..net.nodes())
                .map(|_| Node {
                    child: None,
                    paused: false,
                })
                .collect(),
        };
        for node in 1..=net.nodes() {
            b.spawn(node)?;
        }
        Ok(b)
    }

    /// Every broker's address, comma-separated.
    pub fn bootstrap(&self) -> String {
        (1..=self.net.nodes())
            .map(|n| format!("{}:{BROKER_PORT}", Net::node_addr(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spec(&self) -> String {
        (1..=self.net.nodes())
            .map(|n| format!("{n}={}:{BROKER_PORT}", Net::node_addr(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, node: u8) -> Result<(), BrokerError> {
        let start = |source| BrokerError::Start { node, source };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("broker-{node}.log")))
            .map_err(start)?;
        let err = log.try_clone().map_err(start)?;
        let listen = format!("{}:{BROKER_PORT}", Net::node_addr(node));
        let data = self.dir.join(format!("data-{node}"));
        let mut cmd: Command = self.net.exec_in_node(node, &self.bin.to_string_lossy());
        cmd.arg("--data-dir")
            .arg(&data)
            .args(["--listen", &listen, "--node-id", &node.to_string()])
            .args(["--cluster", &self.spec()])
            .args(BROKER_FLAGS)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // `ip netns exec` execs the broker in place: the child is the broker.
        let child = cmd.spawn().map_err(start)?;
        self.nodes[usize::from(node) - 1] = Node {
            child: Some(child),
            paused: false,
        };
        Ok(())
    }

    fn signal(&self, node: u8, signal: &str) -> Result<(), BrokerError> {
        let Some(child) = &self.nodes[usize::from(node) - 1].child else {
            return Ok(());
        };
        let out = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .output()
            .map_err(|e| BrokerError::Signal {
                node,
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(BrokerError::Signal {
                node,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self, node: u8) {
        let n = &mut self.nodes[usize::from(node) - 1];
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        n.paused = false;
    }

    /// Starts a killed broker again on its data dir.
    pub fn restart(&mut self, node: u8) -> Result<(), BrokerError> {
        if self.nodes[usize::from(node) - 1].child.is_none() {
            self.spawn(node)?;
        }
        Ok(())
    }

    /// SIGSTOP: the process stops answering; its sockets stay open.
    pub fn pause(&mut self, node: u8) -> Result<(), BrokerError> {
        self.signal(node, "-STOP")?;
        self.nodes[usize::from(node) - 1].paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, node: u8) -> Result<(), BrokerError> {
        if self.nodes[usize::from(node) - 1].paused {
            self.signal(node, "-CONT")?;
            self.nodes[usize::from(node) - 1].paused = false;
        }
        Ok(())
    }

    /// Resumes paused brokers and restarts killed ones.
    pub fn heal(&mut self) -> Result<(), BrokerError> {
        for node in 1..=self.net.nodes() {
            self.resume(node)?;
            self.restart(node)?;
        }
        Ok(())
    }

    /// SIGTERM to all, then SIGKILL to what is left.
    pub fn stop(&mut self) {
        for node in 1..=self.net.nodes() {
            let _ = self.resume(node);
            let _ = self.signal(node, "-TERM");
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    match c.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        _ => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Brokers<'_> {
    fn drop(&mut self) {
        for node in 1..=self.net.nodes() {
            self.kill(node);
        }
    }
}
