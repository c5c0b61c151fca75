//! Attaches the names programs (socket owners, ClientHello, DNS) to a
//! cgroup v2 directory, normally the root so every socket is covered.
use std::path::Path;

use aya::{
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr},
    Ebpf,
};

use crate::kernel::load_error::LoadError;

/// Loads and attaches the names programs; returns what was attached.
/// `Single` mode: on kernels with BPF links aya attaches through a link,
/// which coexists with other programs on the same cgroup.
pub fn attach(ebpf: &mut Ebpf, cgroup: &Path) -> Result<Vec<String>, LoadError> {
    let target = cgroup.display().to_string();
    let dir = std::fs::File::open(cgroup).map_err(|e| LoadError::Attach {
        program: "names_egress",
        target: target.clone(),
        source: aya::programs::ProgramError::IOError(e),
    })?;
    let mut attached = Vec::new();
    for program in [
        "names_connect4",
        "names_connect6",
        "names_sendmsg4",
        "names_sendmsg6",
    ] {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram { program })?
            .try_into()
            .map_err(|source| LoadError::Load { program, source })?;
        prog.load()
            .map_err(|source| LoadError::Load { program, source })?;
        prog.attach(&dir, CgroupAttachMode::Single)
            .map_err(|source| LoadError::Attach {
                program,
                target: target.clone(),
                source,
            })?;
        attached.push(format!("{program} -> cgroup {target}"));
    }
    for (program, kind) in [
        ("names_egress", CgroupSkbAttachType::Egress),
        ("names_ingress", CgroupSkbAttachType::Ingress),
    ] {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram { program })?
            .try_into()
            .map_err(|source| LoadError::Load { program, source })?;
        prog.load()
            .map_err(|source| LoadError::Load { program, source })?;
        prog.attach(&dir, kind, CgroupAttachMode::Single)
            .map_err(|source| LoadError::Attach {
                program,
                target: target.clone(),
                source,
            })?;
        attached.push(format!("{program} -> cgroup {target}"));
    }
    Ok(attached)
}
