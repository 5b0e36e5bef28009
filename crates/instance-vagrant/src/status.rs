//! Reading `vagrant status --machine-readable`.
//!
//! Each line is `timestamp,target,type,data...`; commas inside data are written
//! `%!(VAGRANT_COMMA)` and newlines `\n`. The lines that matter are `state` and `provider-name`
//! (one per machine of the Vagrantfile) and `error-exit` (the error class and message when the
//! command failed).

use serde::Serialize;

/// The state Vagrant reports for a machine that is up, with every provider.
pub const RUNNING: &str = "running";
/// The error class of a command that found the machine locked by another Vagrant process
/// (`vagrant status` takes the machine's lock too).
pub const MACHINE_LOCKED: &str = "Vagrant::Errors::MachineLocked";

/// One machine of a Vagrantfile (`{"Name", "State", "Provider"}` in describe properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MachineStatus {
    /// The machine's name (`default` unless the Vagrantfile defines others).
    pub name: String,
    /// Vagrant's state ID: `running`, `stopped`, `not_created`, `poweroff`, `preparing`, ...
    pub state: String,
    /// The provider, when reported.
    pub provider: Option<String>,
}

/// What one `vagrant status --machine-readable` said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The machines, in the order Vagrant first mentioned them.
    pub machines: Vec<MachineStatus>,
    /// `error-exit`'s message, if the command failed.
    pub error: Option<String>,
    /// `error-exit`'s error class, e.g. `Vagrant::Errors::MachineLocked`.
    pub error_class: Option<String>,
}

impl Status {
    /// True when the command failed only because another Vagrant process held the machine.
    pub fn locked(&self) -> bool {
        self.error_class.as_deref() == Some(MACHINE_LOCKED)
    }

    /// True when Vagrant reported at least one machine and every machine is running.
    pub fn running(&self) -> bool {
        !self.machines.is_empty() && self.machines.iter().all(|m| m.state == RUNNING)
    }

    /// The state to report: the first machine that is not running, else `running`
    /// (`unknown` when no machine was reported).
    pub fn state(&self) -> &str {
        self.machines
            .iter()
            .find(|m| m.state != RUNNING)
            .or(self.machines.first())
            .map_or("unknown", |m| m.state.as_str())
    }

    /// The first machine's provider.
    pub fn provider(&self) -> Option<&str> {
        self.machines.iter().find_map(|m| m.provider.as_deref())
    }

    fn machine(&mut self, name: &str) -> &mut MachineStatus {
        let i = match self.machines.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.machines.push(MachineStatus {
                    name: name.to_string(),
                    state: String::new(),
                    provider: None,
                });
                self.machines.len() - 1
            }
        };
        &mut self.machines[i]
    }
}

/// Undoes Vagrant's escaping of a machine-readable data field.
pub fn unescape(field: &str) -> String {
    field
        .replace("%!(VAGRANT_COMMA)", ",")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
}

/// Parses the output of `vagrant status --machine-readable`. Lines that are not
/// machine-readable (warnings Vagrant prints before starting) are ignored, as are machines
/// without a `state` line.
pub fn parse(output: &str) -> Status {
    let mut status = Status::default();
    for line in output.lines() {
        let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
        if fields.len() < 4 || fields[0].parse::<u64>().is_err() {
            continue;
        }
        let (target, kind, data) = (fields[1], fields[2], &fields[3..]);
        match kind {
            "state" if !target.is_empty() => status.machine(target).state = unescape(data[0]),
            "provider-name" if !target.is_empty() => {
                status.machine(target).provider = Some(unescape(data[0]))
            }
            "error-exit" => {
                let message = data.get(1).or(data.first()).copied().unwrap_or_default();
                status.error = Some(unescape(message).trim().to_string());
                status.error_class = (data.len() > 1).then(|| data[0].to_string());
            }
            _ => {}
        }
    }
    status.machines.retain(|m| !m.state.is_empty());
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING_DOCKER: &str = "1795786911,default,metadata,provider,docker
1795786912,default,provider-name,docker
1795786912,default,state,running
1795786912,default,state-human-short,running
1795786912,default,state-human-long,The container is created and running. You can stop it using\\n`vagrant halt`%!(VAGRANT_COMMA) see logs with `vagrant docker-logs`%!(VAGRANT_COMMA) and\\nkill/destroy it with `vagrant destroy`.
1795786912,,ui,info,Current machine states:\\n\\ndefault                   running (docker)\\n
";

    #[test]
    fn a_running_container() {
        let s = parse(RUNNING_DOCKER);
        assert_eq!(
            s.machines,
            vec![MachineStatus {
                name: "default".into(),
                state: "running".into(),
                provider: Some("docker".into())
            }]
        );
        assert!(s.running());
        assert_eq!(s.state(), "running");
        assert_eq!(s.provider(), Some("docker"));
        assert_eq!(s.error, None);
    }

    #[test]
    fn stopped_and_not_created_are_not_running() {
        for state in ["stopped", "not_created", "poweroff", "preparing", "aborted"] {
            let s = parse(&format!(
                "1,default,provider-name,virtualbox\n1,default,state,{state}\n"
            ));
            assert!(!s.running(), "{state}");
            assert_eq!(s.state(), state);
        }
    }

    #[test]
    fn several_machines_run_only_when_all_do() {
        let s = parse("1,web,state,running\n1,db,state,stopped\n");
        assert!(!s.running());
        assert_eq!(s.state(), "stopped");
        assert_eq!(s.machines.len(), 2);
        assert!(parse("1,web,state,running\n1,db,state,running\n").running());
    }

    #[test]
    fn errors_and_noise() {
        let s = parse(
            "Vagrant failed to initialize!\n\
             1795786988,,ui,error,A Vagrant environment or target machine is required\n\
             1795786988,,error-exit,Vagrant::Errors::NoEnvironmentError,A Vagrant environment or target machine is required to run this\\ncommand%!(VAGRANT_COMMA) really.\n",
        );
        assert!(s.machines.is_empty());
        assert!(!s.running());
        assert_eq!(s.state(), "unknown");
        assert_eq!(
            s.error.as_deref(),
            Some(
                "A Vagrant environment or target machine is required to run this\ncommand, really."
            )
        );
        assert_eq!(
            s.error_class.as_deref(),
            Some("Vagrant::Errors::NoEnvironmentError")
        );
        assert!(!s.locked());
        assert_eq!(parse(""), Status::default());
    }

    #[test]
    fn a_locked_machine() {
        let s = parse("1795787605,default,metadata,provider,docker
1795787605,,ui,error,Vagrant can't use the requested machine because it is locked! This\\nmeans that another Vagrant process is currently reading or modifying\\nthe machine.
1795787605,,error-exit,Vagrant::Errors::MachineLocked,Vagrant can't use the requested machine because it is locked! This\\nmeans that another Vagrant process is currently reading or modifying\\nthe machine.
");
        assert!(s.locked());
        assert!(s.machines.is_empty());
        assert!(s.error.unwrap().starts_with(
            "Vagrant can't use the requested machine because it is locked! This\nmeans"
        ));
    }
}
