//! A private Mosquitto running the shipped configuration (`deploy/mosquitto`) on a free
//! local port, for tests and benchmarks. Only the listener, file paths and logging are
//! changed, so what runs here is what cities deploy.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SHIPPED_CONF: &str = include_str!("../../deploy/mosquitto/mosquitto.conf");
pub const SHIPPED_ACL: &str = include_str!("../../deploy/mosquitto/acl");

/// A user of the private broker.
#[derive(Debug, Clone)]
pub struct BrokerUser {
    pub name: String,
    pub password: String,
}

impl BrokerUser {
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> BrokerUser {
        BrokerUser {
            name: name.into(),
            password: password.into(),
        }
    }
}

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    remove_dir: bool,
}

/// The account connection `n` of a client that opens several signs in as: `{base}-{n}`.
/// The shipped configuration makes a connection's client id its user name, so a fleet or
/// a load generator with several connections needs one account per connection, as any
/// gateway does.
pub fn connection_account(base: &str, n: usize) -> String {
    format!("{base}-{n}")
}

/// `count` accounts `{base}-0`... sharing `password`, and the ACL lines that let each
/// read and write `topics` (a filter such as `city/#`).
pub fn connection_accounts(
    base: &str,
    password: &str,
    count: usize,
    topics: &str,
) -> (Vec<BrokerUser>, String) {
    let mut users = Vec::with_capacity(count);
    let mut acl = String::new();
    for n in 0..count {
        let name = connection_account(base, n);
        acl.push_str(&format!("user {name}\ntopic readwrite {topics}\n"));
        users.push(BrokerUser::new(name, password));
    }
    (users, acl)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Broker {
    /// Starts a broker in `dir` (created; removed on drop when `None` was given) with the
    /// shipped configuration, the given users, and ACL lines added after the shipped ones.
    pub fn start(dir: Option<&Path>, users: &[BrokerUser], extra_acl: &str) -> io::Result<Broker> {
        let (dir, remove_dir) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "cityhub-broker-{}-{}",
                    std::process::id(),
                    free_port()?
                ));
                (d, true)
            }
        };
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let passwd = dir.join("passwd");
        // Plain `user:password` lines, hashed in place by one run of mosquitto_passwd.
        let mut plain = String::new();
        for u in users {
            plain.push_str(&format!("{}:{}\n", u.name, u.password));
        }
        std::fs::write(&passwd, plain)?;
        let status = Command::new("mosquitto_passwd")
            .arg("-U")
            .arg(&passwd)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run mosquitto_passwd: {e}")))?;
        if !status.success() {
            return Err(io::Error::other("mosquitto_passwd -U failed"));
        }
        std::fs::write(dir.join("acl"), format!("{SHIPPED_ACL}\n{extra_acl}\n"))?;
        let conf = private_conf(port, &dir);
        let mut f = std::fs::File::create(dir.join("mosquitto.conf"))?;
        f.write_all(conf.as_bytes())?;
        let mut broker = Broker {
            child: None,
            port,
            dir,
            remove_dir,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start mosquitto (is it installed?): {e}"),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "mosquitto exited ({status}); see {}",
                    self.dir.join("mosquitto.log").display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(
                    "mosquitto did not start listening within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the broker cleanly (it saves its persistence file) and starts it again on the
    /// same port with the same state.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// SIGTERM and wait: Mosquitto writes its persistence file on the way out.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.wait()?;
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The shipped configuration with this broker's port, files and log destination.
fn private_conf(port: u16, dir: &Path) -> String {
    let mut out = String::new();
    for line in SHIPPED_CONF.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let replaced = match key {
            "listener" => format!("listener {port} 127.0.0.1"),
            "password_file" => format!("password_file {}", dir.join("passwd").display()),
            "acl_file" => format!("acl_file {}", dir.join("acl").display()),
            "persistence_location" => format!("persistence_location {}/", dir.display()),
            _ => line.to_owned(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    // Running as root (CI, containers): keep root so the private directory stays usable.
    out.push_str("user root\n");
    out
}
