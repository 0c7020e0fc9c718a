"""Sends mail to the ingest with Python's smtplib, as a Python application would.

Run by ingest/tests/clients.rs as:  python3 smtplib_client.py HOST PORT CASE
where CASE is one of: plain, several, smtputf8, 8bitmime.

Prints one JSON object per line for each step, so the test can check every reply and find every
accepted message in RECEIVED:
    {"step": ..., "code": ..., "reply": ..., "from": ..., "to": [...], "sent": hex of the message}
"sent" is the message exactly as handed to smtplib (always CRLF line ends, so smtplib sends it
unchanged apart from dot-stuffing). An unexpected refusal raises, and the script exits non-zero.
"""

import json
import smtplib
import sys


class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the reply to DATA, which sendmail() does not return."""

    last_data = None

    def data(self, msg):
        code, reply = super().data(msg)
        self.last_data = (code, reply.decode("utf-8", "replace"))
        return code, reply


def report(step, code, reply, sender="", to=(), sent=b""):
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    print(json.dumps({"step": step, "code": code, "reply": reply, "from": sender,
                      "to": list(to), "sent": sent.hex()}), flush=True)


def message(subject, body, sender="Alice <alice@example.org>", to="bob@maildrop.test",
            extra=""):
    text = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@python.example>\r\n{extra}\r\n{body}\r\n")
    return text.encode("utf-8")


def send(smtp, step, sender, to, msg, **options):
    """sendmail(), reporting the reply to DATA (or the refusal it raised)."""
    smtp.last_data = None
    smtp.sendmail(sender, to, msg, **options)
    code, reply = smtp.last_data
    report(step, code, reply, sender, to, msg)


def plain(smtp):
    send(smtp, "plain", "alice@example.org", ["bob@maildrop.test"],
         message("plain", "Hello from smtplib.\r\n.A line that starts with a dot."))
    code, reply = smtp.noop()
    report("noop", code, reply)
    code, reply = smtp.verify("bob@maildrop.test")
    report("vrfy", code, reply)


def several(smtp):
    for i, to in enumerate([["bob@maildrop.test"],
                            ["carol@maildrop.test", "Dave+lists@MAILDROP.test"],
                            ["erin@maildrop.test"]]):
        if i:
            code, reply = smtp.rset()
            report("rset", code, reply)
        send(smtp, f"message {i + 1}", "alice@example.org", to,
             message(f"message {i + 1}", f"Message {i + 1} of 3 on one connection.",
                     to=", ".join(to)))


def smtputf8(smtp):
    # A UTF-8 local part: well-formed under SMTPUTF8, but not one of our mailbox names.
    try:
        smtp.sendmail("alice@example.org", ["jörg@maildrop.test"],
                      message("utf8 local part", "x"), mail_options=["SMTPUTF8"])
        report("utf8 local part", 250, "accepted", "alice@example.org", ["jörg@maildrop.test"])
    except smtplib.SMTPRecipientsRefused as e:
        code, reply = e.recipients["jörg@maildrop.test"]
        report("utf8 local part", code, reply, "alice@example.org", ["jörg@maildrop.test"])
    # A UTF-8 sender, display name and body (RFC 6531/6532), to an ASCII mailbox: accepted.
    sender = "jörg@bücher.example"
    send(smtp, "utf8 sender and body", sender, ["joerg@maildrop.test"],
         message("Grüße aus Köln", "Schöne Grüße, 👋\r\nJörg", sender=f"Jörg Müller <{sender}>",
                 to="joerg@maildrop.test",
                 extra="Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n"),
         mail_options=["SMTPUTF8", "BODY=8BITMIME"])


def eightbitmime(smtp):
    # 8-bit text that is not UTF-8: ISO-8859-1, stored byte for byte.
    msg = (b"From: alice@example.org\r\nTo: bob@maildrop.test\r\nSubject: latin-1\r\n"
           b"Message-ID: <latin-1@python.example>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
           b"\r\nCaf\xe9 cr\xe8me, \xe0 bient\xf4t.\r\n")
    send(smtp, "8bitmime", "alice@example.org", ["bob@maildrop.test"], msg,
         mail_options=["BODY=8BITMIME"])


CASES = {"plain": plain, "several": several, "smtputf8": smtputf8, "8bitmime": eightbitmime}


def main():
    host, port, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with RecordingSMTP(host, port, local_hostname="python.example", timeout=30) as smtp:
        code, reply = smtp.ehlo()
        report("ehlo", code, reply)
        CASES[case](smtp)
        code, reply = smtp.quit()
        report("quit", code, reply)


if __name__ == "__main__":
    main()
