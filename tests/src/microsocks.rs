//! A real SOCKS5 server (Debian `microsocks`, installed by
//! scripts/install-test-deps.sh), standing in for tailscaled's
//! `--socks5-server` in the `[tailnet] mode = "socks5"` tests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running microsocks on a free loopback port, killed (by PID) on drop.
pub struct Microsocks {
    child: Child,
    pub addr: SocketAddr,
}

impl Microsocks {
    pub fn start() -> Self {
        Self::start_on(crate::prometheus::free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let child = Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("microsocks is installed (scripts/install-test-deps.sh)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "microsocks did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Microsocks { child, addr }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        self.stop();
    }
}
