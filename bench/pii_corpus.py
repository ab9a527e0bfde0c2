"""Generates the labelled PII corpus of `bench/pii_quality.py`: `bench/corpus/pii/corpus.jsonl`.

One JSON object a line: `text`, `kind` (`pii`, `negative` for hard negatives, `clean`) and `spans`, each
`{"start", "end", "entity"}` in characters. A fixed seed regenerates the file byte for byte (phone numbers
are drawn and checked with the installed `phonenumbers`, so a different version may draw others):

    python bench/pii_corpus.py [--out bench/corpus/pii/corpus.jsonl]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers

SEED = 14
OUT = Path(__file__).resolve().parent / "corpus" / "pii" / "corpus.jsonl"

PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "CA", "ES", "IT", "NL", "MX", "KR", "SE")
PHONE_REGIONS += ("CH", "PL", "ZA", "SG", "AR")

# brand -> (prefixes, lengths), lengths as issued for those prefixes
CARDS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "visa": (("4",), (13, 16, 19)),
    "mastercard": (("51", "53", "55", "2221", "2500", "2720"), (16,)),
    "amex": (("34", "37"), (15,)),
    "discover": (("6011", "65", "644", "649"), (16, 19)),
    "jcb15": (("2131", "1800"), (15,)),
    "jcb": (("3528", "3589"), (16, 19)),
    "diners": (("300", "305", "36", "38"), (14,)),
    "maestro": (("5018", "5020", "5038", "6304", "6759", "6761"), (12, 13, 15, 16, 18, 19)),
    "unionpay": (("62",), (16, 17, 18, 19)),
    "mir": (("2200", "2204"), (16,)),
}
# country -> BBAN shape: a = upper-case letter, n = digit
IBANS = {
    "DE": "n" * 18, "FR": "n" * 23, "GB": "aaaa" + "n" * 14, "ES": "n" * 20, "IT": "a" + "n" * 22,
    "NL": "aaaa" + "n" * 10, "BE": "n" * 12, "CH": "n" * 17, "AT": "n" * 16, "PL": "n" * 24,
    "SE": "n" * 20, "NO": "n" * 11, "DK": "n" * 14, "FI": "n" * 14, "IE": "aaaa" + "n" * 14,
    "PT": "n" * 21, "CZ": "n" * 20, "LU": "n" * 16,
}  # fmt: skip
TLDS = ("com", "org", "io", "co.uk", "de", "museum", "photography", "xyz", "dev", "com.br", "travel")
LABELS = {
    "PHONE_NUMBER": "tel",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
    "US_SSN": "ssn",
    "EMAIL_ADDRESS": "mail",
}
NAMES = ("jane.doe", "j.smith", "maria_garcia", "li.wei", "o'neil", "ops-team", "hans.muller", "a.b.c")


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


class Draw:
    """PII values of each entity, drawn from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def phone(self) -> str:
        rng = self.rng
        region = rng.choice(PHONE_REGIONS)
        kind = rng.choice((phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE))
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None
        national = str(example.national_number)
        for _ in range(50):
            candidate = national[:3] + self.digits(len(national) - 3)
            number = phonenumbers.parse("+" + str(example.country_code) + candidate)
            if phonenumbers.is_valid_number(number):
                break
        else:
            number = example
        style = rng.random()
        if style < 0.3:
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        elif style < 0.6:
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        else:
            text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if region == "US" and rng.random() < 0.4:
            n = str(number.national_number)
            text = rng.choice(
                (f"{n[:3]}-{n[3:6]}-{n[6:]}", f"{n[:3]}.{n[3:6]}.{n[6:]}", f"+1-{n[:3]}-{n[3:6]}-{n[6:]}")
            )
        if rng.random() < 0.2:
            text += rng.choice(("x", " x", " ext. ", " ext ", "#", " #")) + self.digits(rng.randint(2, 4))
        return text

    def card(self) -> str:
        rng = self.rng
        prefixes, lengths = CARDS[rng.choice(sorted(CARDS))]
        prefix, length = rng.choice(prefixes), rng.choice(lengths)
        number = luhn_complete(prefix + self.digits(length - len(prefix) - 1))
        if rng.random() < 0.5:
            return number
        sep = rng.choice((" ", "-"))
        if length == 15 and prefix[:2] in ("34", "37"):
            return sep.join((number[:4], number[4:10], number[10:]))
        return sep.join(number[i : i + 4] for i in range(0, length, 4))

    def iban(self) -> str:
        rng = self.rng
        country = rng.choice(sorted(IBANS))
        bban = "".join(
            rng.choice(string.ascii_uppercase) if c == "a" else rng.choice(string.digits)
            for c in IBANS[country]
        )
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
        if rng.random() < 0.5:
            return iban
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))

    def ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.55:
            # 127/8 is loopback: no one's address
            return str(
                ipaddress.IPv4Address(
                    rng.choice((rng.randint(1, 126), rng.randint(128, 223))) << 24 | rng.getrandbits(24)
                )
            )
        groups = [rng.randint(0, 0xFFFF) if rng.random() < 0.6 else 0 for _ in range(8)]
        groups[0] = rng.choice((0x2001, 0xFE80, 0x2A00, 0x2606))
        address = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
        return address.exploded if rng.random() < 0.35 else address.compressed

    def ssn(self) -> str:
        rng = self.rng
        area = rng.choice([a for a in range(1, 900) if a != 666])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        sep = "-" if rng.random() < 0.7 else ""
        return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"

    def email(self) -> str:
        rng = self.rng
        user = rng.choice(NAMES).replace("'", "")
        if rng.random() < 0.3:
            user += "+" + rng.choice(("news", "billing", "x1", "tag-2"))
        domain = rng.choice(("example", "mail.example", "eu.corp-mail", "uni-berlin", "xn--bcher-kva"))
        return f"{user}@{domain}.{rng.choice(TLDS)}"


# Templates: `{}` takes the value; the entity's context word is part of the template, as in real text.
TEMPLATES: dict[str, list[str]] = {
    "PHONE_NUMBER": [
        "Call me at {} tomorrow.",
        "Tel.: {}",
        '{{"name": "Ana", "phone": "{}"}}',
        "| Ops desk | {} | 24/7 |",
        "2024-03-01T10:00:00Z INFO callback requested to={}",
        "Rufen Sie mich unter {} an.",
        "Mon numéro est le {}.",
        "Mi teléfono es {}, llámame.",
        'contact = "{}"  # on-call',
        "mobile: {}",
        "電話番号は {} です。",
        "Reach the hotel on {} for late check-in.",
    ],
    "CREDIT_CARD": [
        "Charge card {} for the order.",
        '{{"card_number": "{}", "exp": "09/27"}}',
        "| Visa corp | {} |",
        "payment failed pan={} reason=declined",
        "Meine Kreditkarte: {}",
        "Paga con la tarjeta {}.",
        "card = '{}'",
        "Please refund {} by Friday.",
    ],
    "IBAN_CODE": [
        "Send the money to IBAN {} please.",
        '{{"iban": "{}"}}',
        "Überweisung an {} bis Montag.",
        "| Supplier | {} |",
        "beneficiary_account={} amount=1200",
        "Virement sur le compte {}.",
    ],
    "IP_ADDRESS": [
        "The server at {} is down.",
        '{{"client_ip": "{}"}}',
        "2024-05-02 11:02:03 WARN login failed from {}",
        "ssh admin@{}",
        "| web-3 | {} | up |",
        "Der Host {} antwortet nicht.",
        'ip = "{}"',
        "Block traffic from {} at the firewall.",
    ],
    "US_SSN": [
        "My SSN is {}.",
        '{{"ssn": "{}"}}',
        "| Doe, Jane | SSN {} |",
        "social security number: {}",
        "employee ssn={} verified",
        "Mi número de seguro social es {}.",
    ],
    "EMAIL_ADDRESS": [
        "Write to {} about it.",
        '{{"email": "{}"}}',
        "From: {}",
        "| Owner | {} |",
        'send_mail(to="{}")',
        "Schreiben Sie an {}.",
        "user={} action=login",
    ],
}

HARD_NEGATIVES: list[Callable[[Draw], str]] = [
    lambda d: (
        f"Job started at {2010 + d.rng.randint(0, 15)}-{d.rng.randint(1, 12):02d}-{d.rng.randint(1, 28):02d} "
        f"{d.rng.randint(0, 23):02d}:{d.rng.randint(0, 59):02d}:{d.rng.randint(0, 59):02d}"
        " and finished later."
    ),
    lambda d: (
        f"ts={2010 + d.rng.randint(0, 15)}-{d.rng.randint(1, 12):02d}-{d.rng.randint(1, 28):02d}T"
        f"{d.rng.randint(0, 23):02d}:{d.rng.randint(0, 59):02d}:{d.rng.randint(0, 59):02d}"
        f".{d.digits(3)}Z level=info"
    ),
    lambda d: (
        f"Meeting on {d.rng.randint(1, 28):02d}/{d.rng.randint(1, 12):02d}/{2000 + d.rng.randint(0, 25)} "
        f"at {d.rng.randint(8, 18)}:{d.rng.choice(('00', '30'))}."
    ),
    lambda d: (
        f"The run took {d.rng.randint(0, 99):02d}:{d.rng.randint(0, 59):02d}:{d.rng.randint(0, 59):02d}"
        f".{d.digits(3)} in total."
    ),
    lambda d: (
        f"Upgrade to version {d.rng.randint(1, 12)}.{d.rng.randint(0, 20)}.{d.rng.randint(0, 200)}"
        f".{d.rng.randint(0, 300)} before Friday."
    ),
    lambda d: (
        f"Mozilla/5.0 (Windows NT 6.1; rv:{d.rng.randint(1, 9)}.{d.rng.randint(0, 9)}.{d.rng.randint(0, 9)}"
        f".{d.rng.randint(0, 30)}) Gecko/20100101"
    ),
    lambda d: (
        f"Installed package v{d.rng.randint(1, 9)}.{d.rng.randint(0, 99)}.{d.rng.randint(0, 99)}"
        f".{d.rng.randint(0, 999)} on all hosts."
    ),
    lambda d: (
        f"kernel build {d.rng.randint(3, 6)}.{d.rng.randint(0, 19)}.{d.rng.randint(0, 255)}"
        f".{d.rng.randint(0, 255)} is affected."
    ),
    lambda d: f"Your order #{d.digits(d.rng.randint(8, 12))} has shipped.",
    lambda d: f"Order number {d.digits(3)}-{d.digits(7)}-{d.digits(7)} was cancelled.",
    lambda d: f"Invoice No. {d.digits(d.rng.randint(9, 11))} is overdue.",
    lambda d: (
        f"Please quote invoice {2015 + d.rng.randint(0, 10)}-{d.digits(4)}-{d.digits(4)} in the payment."
    ),
    lambda d: f"Ticket {d.digits(8)} was closed by support.",
    lambda d: f"See ticket #{d.digits(10)} for details.",
    lambda d: f"Tracking number: {d.digits(12)}",
    lambda d: f"ISBN {luhn_isbn(d)} is out of print.",
    lambda d: f"request_id={d.rng.getrandbits(128):032x}-{d.digits(4)}",
    lambda d: f"trace {uuid(d)} failed",
    lambda d: f"commit {d.rng.getrandbits(160):040x} fixed it",
    lambda d: f"The total was ${d.rng.randint(1, 999)},{d.digits(3)},{d.digits(3)}.{d.digits(2)} last year.",
    lambda d: f"Preis: {d.rng.randint(1, 99)}.{d.digits(3)},{d.digits(2)} EUR",
    lambda d: f"Coordinates {d.rng.randint(-89, 89)}.{d.digits(6)}, {d.rng.randint(-179, 179)}.{d.digits(6)}",
    lambda d: f"Listening on localhost:{d.rng.randint(1024, 65535)} and 0.0.0.0:{d.rng.randint(1024, 65535)}",
    lambda d: f"user id {d.digits(10)} has no e-mail on file",
    lambda d: f"Account number {d.digits(d.rng.randint(7, 10))} was closed.",
    lambda d: (
        f"Population grew from {d.rng.randint(1, 999)},{d.digits(3)},{d.digits(3)} to "
        f"{d.rng.randint(1, 999)},{d.digits(3)},{d.digits(3)}."
    ),
    lambda d: f"Epoch {d.rng.randint(1400000000, 1800000000)} ms {d.digits(13)}",
    lambda d: f"Serial number SN{d.digits(12)} registered.",
    lambda d: f"Part {d.digits(4)}-{d.digits(4)}-{d.digits(2)} is back in stock.",
    lambda d: f"PO {d.digits(10)} approved by finance.",
]

CLEAN = [
    "What is the capital of France?", "Summarise this paragraph in three bullet points.",
    "Write a haiku about autumn leaves.", "Explain the difference between TCP and UDP.",
    "Translate 'good morning' into Spanish.", "How do I reverse a list in Python?",
    "Draft a polite reply declining the meeting.", "Wie spät ist es in Tokio?",
    "Quelle est la meilleure saison pour visiter Lyon?", "Give me three ideas for a birthday party.",
    "Refactor this function to avoid the nested loops.", "Which planets have rings?",
    "We shipped 3 releases in 2 weeks and fixed 14 bugs.", "The recipe needs 2 eggs and 250 g of flour.",
    "Compare React and Vue for a small internal dashboard.", "Is 17 a prime number?",
]  # fmt: skip


def luhn_isbn(d: Draw) -> str:
    body = "978" + d.digits(9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    return f"{body[:3]}-{body[3]}-{body[4:7]}-{body[7:12]}-{check}"


def uuid(d: Draw) -> str:
    h = f"{d.rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def record(text: str, kind: str, spans: list[tuple[int, int, str]]) -> dict[str, object]:
    return {"kind": kind, "text": text, "spans": [{"start": s, "end": e, "entity": n} for s, e, n in spans]}


def fill(template: str, value: str, entity: str) -> dict[str, object]:
    start = len(template.split("{}")[0].format())
    text = template.format(value)
    return record(text, "pii", [(start, start + len(value), entity)])


def generate() -> list[dict[str, object]]:
    rng = random.Random(SEED)
    draw = Draw(rng)
    makers = {
        "PHONE_NUMBER": (draw.phone, 600), "CREDIT_CARD": (draw.card, 500), "IBAN_CODE": (draw.iban, 300),
        "IP_ADDRESS": (draw.ip, 350), "US_SSN": (draw.ssn, 250), "EMAIL_ADDRESS": (draw.email, 250),
    }  # fmt: skip
    records = []
    for entity, (make, count) in makers.items():
        for i in range(count):
            records.append(fill(TEMPLATES[entity][i % len(TEMPLATES[entity])], make(), entity))
    # Several values in one text, separated as in a table row or a log line.
    for _ in range(100):
        entities = rng.sample(sorted(makers), 3)
        text, spans = "", []
        for entity in entities:
            label = LABELS[entity]
            text += f"{label}: "
            value = makers[entity][0]()
            spans.append((len(text), len(text) + len(value), entity))
            text += value + " | "
        records.append(record(text.rstrip(" |"), "pii", spans))
    for i in range(360):
        records.append(record(HARD_NEGATIVES[i % len(HARD_NEGATIVES)](draw), "negative", []))
    for i in range(200):
        records.append(record(CLEAN[i % len(CLEAN)], "clean", []))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for r in generate():
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
