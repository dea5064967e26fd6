"""An SMTP server for the email channel's tests: aiosmtpd, delivering each
message into <root>/<local part>/Maildir/new, where Dovecot serves it.

Logins (AUTH PLAIN/LOGIN) are checked against a Dovecot passwd-file with
{PLAIN} passwords; sending without logging in is allowed too, as a mail
server accepts mail for its users from anyone.

With CERT and KEY it offers STARTTLS (not required, so plain clients can
still hand it mail).

usage: smtp_maildir.py PORT MAIL_ROOT USERS_FILE [CERT KEY]
"""

import os
import signal
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def passwords(path):
    users = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, _, rest = line.strip().partition(":")
            secret = rest.split(":", 1)[0]
            if secret.startswith("{PLAIN}"):
                users[name] = secret[len("{PLAIN}"):]
    return users


class Deliver:
    def __init__(self, root):
        self.root = root
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            local = rcpt.split("@", 1)[0].lower()
            maildir = os.path.join(self.root, local, "Maildir")
            for sub in ("tmp", "new", "cur"):
                os.makedirs(os.path.join(maildir, sub), mode=0o777, exist_ok=True)
            self.count += 1
            name = f"{time.time_ns()}.P{os.getpid()}Q{self.count}.ocg-test"
            tmp = os.path.join(maildir, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(b"Return-Path: <" + envelope.mail_from.encode() + b">\r\n")
                f.write(envelope.original_content)
            os.chmod(tmp, 0o666)
            os.rename(tmp, os.path.join(maildir, "new", name))
        return "250 Message accepted for delivery"


def main():
    port, root, users_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.umask(0)
    users = passwords(users_file)

    def authenticate(server, session, envelope, mechanism, data):
        ok = (
            isinstance(data, LoginPassword)
            and users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok)

    tls = None
    if len(sys.argv) > 5:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[4], sys.argv[5])
    controller = Controller(
        Deliver(root),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
        auth_required=False,
        tls_context=tls,
        require_starttls=False,
    )
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
