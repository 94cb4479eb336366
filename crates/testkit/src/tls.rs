//! Throwaway certificate authorities (with `openssl`): a private CA in `ca.pem` and a server
//! certificate signed by it, valid for two days.

use std::path::Path;
use std::process::{Command, Stdio};

/// A private CA (ca.pem) and a leaf for localhost/127.0.0.1 signed by it (cert.pem, key.pem),
/// P-256 keys: webpki rejects a self-signed CA certificate used directly as the server's.
pub fn localhost_ec(d: &Path) {
    let sh = format!(
        "set -e; cd '{}'; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr; \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf; \
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem",
        d.display()
    );
    let out = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a throwaway CA (ca.pem) and a certificate for 127.0.0.1 signed by it (server.pem,
/// server.key), RSA 2048 keys, in `d`.
pub fn loopback_ip_rsa(d: &Path) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl installed");
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tenantry test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A throwaway app certificate for certificate credentials (Entra ID wants RSA): a self-signed
/// RSA 2048 certificate valid for two days, made with `openssl` in `d`.
pub struct AppCertificate {
    /// One PEM file holding the private key (PKCS#8) and the certificate: what
    /// `--client-certificate` takes.
    pub pem_file: std::path::PathBuf,
    /// The certificate alone (PEM): what is registered on the app.
    pub certificate_pem: Vec<u8>,
    /// The private key alone (PEM).
    pub key_pem: Vec<u8>,
}

/// Makes `{name}.key`, `{name}.crt` and `{name}.pem` (both) in `d`.
pub fn app_certificate(d: &Path, name: &str) -> AppCertificate {
    let key = d.join(format!("{name}.key"));
    let crt = d.join(format!("{name}.crt"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN=tenantry test app {name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_pem = std::fs::read(&key).unwrap();
    let certificate_pem = std::fs::read(&crt).unwrap();
    let pem_file = d.join(format!("{name}.pem"));
    std::fs::write(&pem_file, [key_pem.as_slice(), &certificate_pem].concat()).unwrap();
    AppCertificate {
        pem_file,
        certificate_pem,
        key_pem,
    }
}
