//! The `name` and `image` labels: what the container runtime wrote on disk.
//!
//! Owns: recognising the runtime from the cgroup path (Docker, Podman,
//! containerd/k3s, CRI-O, LXC, systemd units) and reading its on-disk record
//! (Docker's `config.v2.json`, containers/storage's `containers.json` and
//! `images.json`, the OCI `config.json` annotations CRI runtimes write), plus
//! the tiny JSON reader that needs. Runs once per new container, never per
//! collection. Must never: talk to a runtime's socket or database, fail the
//! collection (an unreadable record just leaves the fallback name), or read
//! outside the rootfs.

use crate::collector::{read_optional, Context};

/// Labels for one container, and whether a runtime record was found (if
/// not, the lookup is retried a few times: the record may lag the cgroup).
pub struct Meta {
    pub name: String,
    pub image: String,
    pub resolved: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runtime {
    Docker,
    Podman,
    Crio,
    Containerd,
    /// A bare 64-hex id under a kubepods tree: containerd or CRI-O.
    Kube,
}

const PREFIXES: [(&str, Runtime); 5] = [
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("crio-", Runtime::Crio),
    ("cri-containerd-", Runtime::Containerd),
    ("nerdctl-", Runtime::Containerd),
];

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The runtime and container id a cgroup path names, if any.
fn container_id(path: &str) -> Option<(Runtime, &str)> {
    let leaf = path.rsplit('/').next()?;
    let stem = leaf.strip_suffix(".scope").unwrap_or(leaf);
    for (prefix, rt) in PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            if is_id(id) {
                return Some((rt, id));
            }
        }
    }
    if is_id(stem) {
        let rt = if path.starts_with("/docker/") {
            Runtime::Docker
        } else if path.contains("/libpod_parent/") {
            Runtime::Podman
        } else {
            Runtime::Kube
        };
        return Some((rt, stem));
    }
    None
}

/// The name a cgroup path gives without any runtime record.
fn fallback_name(path: &str) -> &str {
    if let Some((_, id)) = container_id(path) {
        return &id[..12];
    }
    if let Some(rest) = path.strip_prefix("/lxc.payload.") {
        return rest.split('/').next().unwrap_or(rest);
    }
    if let Some(rest) = path
        .strip_prefix("/lxc/")
        .or_else(|| path.strip_prefix("/lxc.payload/"))
    {
        return rest.split('/').next().unwrap_or(rest);
    }
    let leaf = path.rsplit('/').next().unwrap_or(path);
    if leaf.ends_with(".service") {
        return leaf;
    }
    leaf.strip_suffix(".scope")
        .or_else(|| leaf.strip_suffix(".slice"))
        .unwrap_or(leaf)
}

pub fn resolve(ctx: &Context, path: &str, buf: &mut String) -> Meta {
    let mut meta = Meta {
        name: fallback_name(path).to_owned(),
        image: String::new(),
        resolved: true,
    };
    let Some((rt, id)) = container_id(path) else {
        return meta;
    };
    let found = match rt {
        Runtime::Docker => docker(ctx, id, buf, &mut meta),
        Runtime::Podman => podman(ctx, id, buf, &mut meta),
        Runtime::Crio => crio(ctx, id, buf, &mut meta),
        Runtime::Containerd => containerd(ctx, id, buf, &mut meta),
        Runtime::Kube => containerd(ctx, id, buf, &mut meta) || crio(ctx, id, buf, &mut meta),
    };
    meta.resolved = found;
    meta
}

fn load(ctx: &Context, rel: &str, buf: &mut String) -> Option<Json> {
    match read_optional(&ctx.root_path(rel), buf) {
        Ok(true) => Json::parse(buf),
        _ => None,
    }
}

fn set(dst: &mut String, v: Option<&str>) -> bool {
    match v {
        Some(s) if !s.is_empty() => {
            s.clone_into(dst);
            true
        }
        _ => false,
    }
}

fn docker(ctx: &Context, id: &str, buf: &mut String, m: &mut Meta) -> bool {
    let Some(doc) = load(
        ctx,
        &format!("/var/lib/docker/containers/{id}/config.v2.json"),
        buf,
    ) else {
        return false;
    };
    let name = doc
        .get("Name")
        .and_then(Json::as_str)
        .map(|s| s.trim_start_matches('/'));
    let found = set(&mut m.name, name);
    set(
        &mut m.image,
        doc.get("Config")
            .and_then(|c| c.get("Image"))
            .and_then(Json::as_str),
    );
    found
}

fn podman(ctx: &Context, id: &str, buf: &mut String, m: &mut Meta) -> bool {
    const STORAGE: &str = "/var/lib/containers/storage";
    let Some(list) = load(
        ctx,
        &format!("{STORAGE}/overlay-containers/containers.json"),
        buf,
    ) else {
        return false;
    };
    let Some(entry) = list
        .items()
        .iter()
        .find(|e| e.get("id").and_then(Json::as_str) == Some(id))
    else {
        return false;
    };
    let first = |e: &Json| {
        e.get("names")
            .and_then(|n| n.items().first())
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    let found = set(&mut m.name, first(entry).as_deref());
    if let Some(image_id) = entry.get("image").and_then(Json::as_str) {
        if let Some(images) = load(ctx, &format!("{STORAGE}/overlay-images/images.json"), buf) {
            let img = images
                .items()
                .iter()
                .find(|e| e.get("id").and_then(Json::as_str) == Some(image_id));
            set(&mut m.image, img.and_then(first).as_deref());
        }
    }
    found
}

/// Kubernetes containers as `namespace/pod/container` (`POD` for the
/// sandbox), which is unique on the node and says where to look.
fn kube_name(
    namespace: Option<&str>,
    pod: Option<&str>,
    container: Option<&str>,
) -> Option<String> {
    let pod = pod?;
    let container = container.filter(|c| !c.is_empty()).unwrap_or("POD");
    Some(match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{pod}/{container}"),
        _ => format!("{pod}/{container}"),
    })
}

fn crio(ctx: &Context, id: &str, buf: &mut String, m: &mut Meta) -> bool {
    let rel = format!("/var/lib/containers/storage/overlay-containers/{id}/userdata/config.json");
    let Some(doc) = load(ctx, &rel, buf) else {
        return false;
    };
    let Some(a) = doc.get("annotations") else {
        return false;
    };
    let s = |k: &str| a.get(k).and_then(Json::as_str);
    let name = kube_name(
        s("io.kubernetes.pod.namespace"),
        s("io.kubernetes.pod.name"),
        s("io.kubernetes.container.name"),
    );
    let found = set(&mut m.name, name.as_deref());
    set(&mut m.image, s("io.kubernetes.cri-o.ImageName"));
    found
}

fn containerd(ctx: &Context, id: &str, buf: &mut String, m: &mut Meta) -> bool {
    const STATE: [&str; 2] = ["/run/containerd", "/run/k3s/containerd"];
    const NAMESPACES: [&str; 3] = ["k8s.io", "default", "moby"];
    for state in STATE {
        for ns in NAMESPACES {
            let rel = format!("{state}/io.containerd.runtime.v2.task/{ns}/{id}/config.json");
            let Some(doc) = load(ctx, &rel, buf) else {
                continue;
            };
            let Some(a) = doc.get("annotations") else {
                return false;
            };
            let s = |k: &str| a.get(k).and_then(Json::as_str);
            let name = kube_name(
                s("io.kubernetes.cri.sandbox-namespace"),
                s("io.kubernetes.cri.sandbox-name"),
                s("io.kubernetes.cri.container-name"),
            );
            let found = set(&mut m.name, name.as_deref().or(s("nerdctl/name")));
            set(&mut m.image, s("io.kubernetes.cri.image-name"));
            return found;
        }
    }
    false
}

/// Just enough JSON for runtime records: strings, objects, arrays; numbers
/// and literals are skipped. Depth is bounded so a hostile file cannot
/// overflow the stack.
#[derive(Debug, PartialEq)]
pub enum Json {
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    Other,
}

const MAX_DEPTH: usize = 64;

impl Json {
    pub fn parse(s: &str) -> Option<Json> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.b.len()).then_some(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.string().map(Json::Str),
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    kv.push((k, self.value(depth + 1)?));
                    if self.eat(b',') {
                        continue;
                    }
                    return self.eat(b'}').then_some(Json::Obj(kv));
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Arr(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    if self.eat(b',') {
                        continue;
                    }
                    return self.eat(b']').then_some(Json::Arr(v));
                }
            }
            _ => {
                // Number, true, false, null: skip to the next delimiter.
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.i += 1;
                }
                (self.i > start).then_some(Json::Other)
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let cp = u32::from_str_radix(hex, 16).ok()?;
                            // Surrogate pairs do not occur in the names we
                            // read; an unpaired one becomes U+FFFD.
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reads_nested_strings_and_skips_the_rest() {
        let j = Json::parse(r#" {"a": 1, "Name":"/web\u0031", "Config": {"Image": "nginx:1", "x": [true, null, {"y": -2.5e3}]}, "l": ["p","q"]} "#).unwrap();
        assert_eq!(j.get("Name").and_then(Json::as_str), Some("/web1"));
        assert_eq!(
            j.get("Config")
                .and_then(|c| c.get("Image"))
                .and_then(Json::as_str),
            Some("nginx:1")
        );
        assert_eq!(j.get("l").unwrap().items().len(), 2);
        assert!(Json::parse("{\"a\": ").is_none());
        assert!(Json::parse("{} x").is_none());
        let deep = "[".repeat(1000);
        assert!(Json::parse(&deep).is_none());
    }

    #[test]
    fn ids_and_fallback_names() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            container_id(&format!("/system.slice/docker-{id}.scope")),
            Some((Runtime::Docker, id))
        );
        assert_eq!(
            container_id(&format!("/docker/{id}")),
            Some((Runtime::Docker, id))
        );
        assert_eq!(
            container_id(&format!("/kubepods/burstable/pod1/{id}")),
            Some((Runtime::Kube, id))
        );
        assert_eq!(
            container_id(&format!("/kubepods/pod1/crio-{id}")),
            Some((Runtime::Crio, id))
        );
        assert_eq!(
            container_id(&format!("/machine.slice/libpod-{id}.scope")),
            Some((Runtime::Podman, id))
        );
        assert_eq!(
            fallback_name(&format!("/x/cri-containerd-{id}.scope")),
            "0123456789ab"
        );
        assert_eq!(fallback_name("/system.slice/ssh.service"), "ssh.service");
        assert_eq!(fallback_name("/lxc.payload.web"), "web");
        assert_eq!(fallback_name("/lxc/db"), "db");
        assert_eq!(fallback_name("/cairn-test"), "cairn-test");
        assert_eq!(
            fallback_name("/kubepods.slice/kubepods-pod12_3.slice"),
            "kubepods-pod12_3"
        );
    }
}
