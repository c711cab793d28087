"""A labelled English evaluation corpus for the text detectors, generated deterministically.

Written independently of Veil's recognizers: the names, streets, cities and groups below
are this file's own (Veil's detectors use no name or street lists at all), and the
templates were written as a support desk, a clinic, a bank and an engineering team
would write, not from the detector rules. About 40 % of the records carry no PII at all
(tickets, release notes, meeting notes, product text) to measure over-redaction.

``generate(n, seed)`` returns ``[Sample(text, spans)]`` with gold spans
``(start, end, entity_type)``. Entity types: PERSON, STREET_ADDRESS, PHONE_NUMBER,
EMAIL_ADDRESS, CREDIT_CARD, US_SSN, IBAN_CODE, IP_ADDRESS, DATE_TIME, LOCATION, NRP,
CREDENTIAL. The first seven are the direct identifiers.
"""

from __future__ import annotations

import random
import string
from typing import NamedTuple

DIRECT = (
    "PERSON",
    "STREET_ADDRESS",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
)

FIRST = """
James Mary Robert Patricia Michael Jennifer William Linda David Elizabeth Richard Barbara
Joseph Susan Thomas Jessica Charles Sarah Christopher Karen Daniel Lisa Matthew Nancy
Anthony Betty Mark Sandra Donald Ashley Steven Kimberly Andrew Emily Kenneth Donna Joshua
Michelle Kevin Carol Brian Amanda George Melissa Timothy Deborah Ronald Stephanie Jason
Rebecca Edward Sharon Jeffrey Laura Ryan Cynthia Jacob Amy Gary Angela Nicholas Shirley
Eric Brenda Jonathan Emma Stephen Anna Larry Pamela Justin Nicole Scott Samantha Brandon
Katherine Benjamin Christine Samuel Debra Gregory Rachel Alexander Carolyn Patrick Janet
Frank Maria Raymond Olivia Jack Heather Dennis Helen Jerry Catherine Tyler Diane Aaron
Julie Jose Victoria Adam Joyce Nathan Lauren Henry Kelly Zachary Christina Douglas Ruth
Peter Joan Kyle Virginia Noah Judith Ethan Evelyn Jeremy Hannah Christian Andrea Walter
Megan Keith Cheryl Austin Jacqueline Roger Madison Terry Teresa Sean Abigail Gerald
Sophia Carl Martha Dylan Sara Harold Gloria Jordan Janice Jesse Kathryn Bryan Ann
Lawrence Isabella Arthur Judy Gabriel Charlotte Bruce Julia Logan Grace Billy Amber
Joe Alice Alan Jean Juan Denise Elijah Frances Willie Danielle Albert Marilyn Wayne
Natalie Randy Beverly Mason Diana Vincent Brittany Liam Theresa Roy Kayla Bobby Alexis
Caleb Doris Bradley Lori Russell Tiffany Lucas Kathleen Priya Rahul Ananya Arjun Mei
Wei Hiroshi Yuki Sakura Kenji Min-jun Ji-woo Oluwaseun Chiamaka Kwame Ama Tunde Ngozi
Mohammed Fatima Omar Aisha Yusuf Layla Hamza Zainab Ahmed Leila Dmitri Olga Sergei
Anastasia Ivan Katarzyna Piotr Agnieszka Mateusz Joaquin Valentina Santiago Camila
Mateo Lucia Diego Ximena Alejandro Guadalupe Thiago Beatriz Joao Ines Siobhan Declan
Niamh Ciaran Astrid Lars Ingrid Bjorn Freya Soren Giulia Lorenzo Chiara Matteo Elodie
Mathieu Amelie Hugo Anh Minh Thanh Linh Nguyen Tran Sanjay Deepa Vikram Lakshmi Arash
Shirin Dariush Noor Tariq Yasmin Emeka Adaeze Kofi Abena Thabo Naledi Sipho Zanele
""".split()

LAST = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White
Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres
Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts
Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales
Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos
Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes
Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry
Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons
Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West
Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro
Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry
Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez
Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd
Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols
Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce
Ramanathan Krishnamurthy Venkataraman Iyer Chatterjee Banerjee Mukherjee Reddy Nair Rao
Takahashi Yamamoto Nakamura Kobayashi Watanabe Suzuki Park Choi Jung Kang Zhang Wang Liu
Huang Zhao Okafor Adeyemi Okonkwo Mensah Asante Boateng Abubakar Haddad Khalil Nasser
Farouk Rahman Hussain Qureshi Siddiqui Kowalski Nowak Wisniewski Lewandowski Petrov
Ivanova Smirnov Volkov Fedorov Schneider Fischer Weber Becker Hoffmann Schulz Rossi Russo
Ferrari Esposito Bianchi Romano Dubois Lefebvre Moreau Laurent Girard Bonnet O'Brien
O'Connor O'Sullivan McCarthy Gallagher Doherty Kennedy Lindqvist Johansson Andersson
Nilsson Eriksson Larsen Hansen Pedersen Vandenberg DeVries Jansen Bakker Visser
Santos Oliveira Souza Pereira Costa Carvalho Almeida Ribeiro Dlamini Nkosi Mokoena
""".split()

STREET_NAMES = """
Maple Oak Pine Cedar Elm Birch Walnut Chestnut Spruce Willow Magnolia Sycamore Hickory
Dogwood Laurel Juniper Cypress Aspen Poplar Hawthorn Lincoln Washington Jefferson Madison
Franklin Adams Jackson Monroe Hamilton Grant Highland Lakeview Riverside Hillcrest Park
Sunset Meadow Valley Ridge Forest Spring Harbor Bay Prospect Church School Mill Market
Bridge Railroad Union Center Liberty Main Broad Water King Queen Cambridge Oxford
Brookside Fairview Glenwood Greenwood Kingston Summit Orchard Vineyard Canyon Mesa
""".split()
STREET_TYPES = [
    "Street", "St", "St.", "Avenue", "Ave", "Ave.", "Road", "Rd", "Boulevard", "Blvd",
    "Lane", "Ln", "Drive", "Dr", "Court", "Ct", "Place", "Way", "Terrace", "Circle",
    "Parkway", "Highway",
]  # fmt: skip
CITIES = [
    ("Springfield", "IL"), ("Portland", "OR"), ("Austin", "TX"), ("Columbus", "OH"),
    ("Denver", "CO"), ("Raleigh", "NC"), ("Madison", "WI"), ("Tucson", "AZ"),
    ("Omaha", "NE"), ("Boise", "ID"), ("Albany", "NY"), ("Trenton", "NJ"),
    ("Savannah", "GA"), ("Fresno", "CA"), ("Spokane", "WA"), ("Knoxville", "TN"),
    ("Dayton", "OH"), ("Lansing", "MI"), ("Eugene", "OR"), ("Provo", "UT"),
    ("Burlington", "VT"), ("Wichita", "KS"), ("Tulsa", "OK"), ("Reno", "NV"),
]  # fmt: skip
NRP_TERMS = [
    "Catholic", "Muslim", "Jewish", "Hindu", "Buddhist", "Sikh", "Mormon", "Protestant",
    "Democrat", "Republican", "Libertarian", "Mexican", "Nigerian", "Korean",
    "Vietnamese", "Filipino", "Pakistani", "Brazilian", "Hispanic", "Haitian",
]  # fmt: skip
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "clinic.example",
           "example.co.uk", "uni.example.edu"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip

PII_TEMPLATES = [
    "Hi, my name is {name} and my number is {phone}.",
    "Please send the contract to {name} at {email}.",
    "{name} called from {phone} about the late delivery.",
    "Patient {name} (DOB {date}) was seen today; follow-up call to {phone}.",
    "Ship the replacement to {name}, {address}.",
    "Customer {name} lives at {address} and prefers email: {email}.",
    "Charge the card {card} for the annual plan, cardholder {name}.",
    "My SSN is {ssn}, can you update my tax form?",
    "Refund sent to IBAN {iban} for {name}.",
    "Dear {first}, thanks for reaching out. We will call you at {phone}.",
    "Login for {email} came from {ip} at 03:14.",
    "Dr. {last} reviewed the chart for {name} on {date}.",
    "Emergency contact: {name}, {phone}, {address}.",
    "{name} ({email}) asked to close the account ending {card_last4}.",
    "The tenant, {name}, moved into {address} on {date}.",
    "Spoke with {first} {last} today; they are {nrp} and asked about holiday leave.",
    "Forwarding to {name}: the applicant is {nrp} and requested an interpreter.",
    "Invoice for {name}, {address}. Questions? Call {phone} or write to {email}.",
    "Mrs. {last} paid with {card} and asked for a receipt at {email}.",
    "Our aws access key {aws_key} was pasted in the channel by {name}.",
    "{name}'s password is {password} until the reset on Monday.",
    "Mr. {last} from {city} disputes the charge on card {card}.",
    "Background check: {name}, SSN {ssn}, born {date}, current address {address}.",
    "Please wire the deposit to {iban} and confirm with {name} on {phone}.",
    "New hire {name} starts on {date}; desk phone {phone}, laptop IP {ip}.",
    "Thanks {first}! I'll forward this to {other_name} in billing.",
    "Deliver to {address}. Buzzer broken, call {phone} on arrival.",
    "{name} and {other_name} both signed the lease at {address}.",
    "Token for the staging API: {api_token} (owner: {email}).",
    "Reminder: {name} has an appointment on {date} at the {city} clinic.",
    "Account holder {name}, card {card}, billing address {address}.",
    "From: {name} <{email}>\nSubject: change of address\nI moved to {address}.",
    "Verified identity of {name} with SSN {ssn} and phone {phone}.",
    "Hello {first}, your order will arrive at {address} by Friday.",
    "Escalated by {name}; the customer is {nrp} and prefers a callback on {phone}.",
    "The courier left the parcel with {name} at {address}.",
]

NONPII_TEMPLATES = [
    "Please review the attached invoice before the {weekday} meeting.",
    "The quarterly report is attached. No changes to the schedule this week.",
    "Deployment {version} rolled out to {count} nodes with no errors.",
    "Order #{order} was shipped on time and the tracking page is updated.",
    "We reduced the p99 latency from {ms} ms to {ms2} ms after the cache change.",
    "The team agreed to move the retrospective to {weekday} afternoon.",
    "Total due is ${amount}; payment terms are net 30.",
    "Reminder: the office is closed on {weekday} for maintenance.",
    "The build failed because the integration tests timed out after {count} minutes.",
    "Thanks for the feedback on the new dashboard, we will ship the fix next sprint.",
    "Our refund policy allows returns within {count} days of delivery.",
    "The printer on the third floor is out of toner again.",
    "Sales grew by {pct} percent in the last quarter, driven by renewals.",
    "Ticket {order} is a duplicate of an older issue and can be closed.",
    "The warehouse received {count} pallets this morning and all were inspected.",
    "Please use the staging environment for testing, not production.",
    "The new onboarding guide covers accounts, billing, and support hours.",
    "Lunch will be provided at the all-hands on {weekday}.",
    "The firmware update fixes the battery drain reported by several users.",
    "We are migrating the reporting jobs to the new scheduler next month.",
    "Customer satisfaction rose to {pct} percent after the support changes.",
    "The contract renewal is due at the end of the quarter.",
    "Average handling time dropped to {count} minutes per ticket.",
    "The backup completed in {ms} seconds and was verified by checksum.",
    "Our store opens at 9 am and closes at 6 pm on weekdays.",
    "The marketing campaign will launch after legal approves the copy.",
    "Version {version} deprecates the old export endpoint.",
    "The meeting notes are in the shared folder under planning.",
    "Shipping to Canada now takes {count} business days on average.",
    "Please restart the service after applying the configuration change.",
    "The survey had {count} responses and most asked for dark mode.",
    "Inventory for the blue model is low; reorder {count} units.",
    "The audit found no issues with the expense reports this year.",
    "Engineering will present the roadmap at the next town hall.",
    "The cafeteria menu changes every Monday.",
    "The dataset has {count} rows and {ms} columns after cleaning.",
    "Keep the discussion in the incident channel until the review.",
    "Password resets now require a second factor for all staff.",
    "The API returns a 429 status when the rate limit is exceeded.",
    "Invoices are generated on the first business day of each month.",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


class Sample(NamedTuple):
    text: str
    spans: tuple  # ((start, end, entity_type), ...)


class _Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def name(self) -> str:
        r = self.r
        first, last = r.choice(FIRST), r.choice(LAST)
        form = r.random()
        if form < 0.1:
            return f"{first} {r.choice(string.ascii_uppercase)}. {last}"
        if form < 0.15:
            return f"{first} {r.choice(FIRST)} {last}"
        return f"{first} {last}"

    def phone(self) -> str:
        r = self.r
        a, b, c = r.randint(201, 989), r.randint(200, 999), r.randint(0, 9999)
        return r.choice(
            [
                f"({a}) {b}-{c:04d}",
                f"{a}-{b}-{c:04d}",
                f"{a}.{b}.{c:04d}",
                f"+1 {a} {b} {c:04d}",
                f"+1-{a}-{b}-{c:04d}",
                f"{a} {b} {c:04d}",
                f"{a}{b}{c:04d}",
                f"+44 20 {r.randint(7000, 8999)} {r.randint(1000, 9999)}",
            ]
        )

    def email(self, name: str) -> str:
        r = self.r
        parts = [p.strip(".").lower().replace("'", "") for p in name.split() if len(p) > 2]
        local = r.choice(
            [
                ".".join(parts[:2]),
                parts[0][0] + parts[-1],
                parts[0] + str(r.randint(1, 99)),
                parts[-1] + "_" + parts[0][:3],
            ]
        )
        return f"{local}@{r.choice(DOMAINS)}"

    def address(self) -> str:
        r = self.r
        number = r.randint(1, 9999)
        street = r.choice(STREET_NAMES)
        if r.random() < 0.15:
            street = f"{r.choice(['North', 'South', 'East', 'West', 'N.', 'W.'])} {street}"
        if r.random() < 0.1:
            street = f"{r.choice([1, 2, 3, 5, 12, 42, 101])}{r.choice(['st', 'nd', 'rd', 'th'])}"
        base = f"{number} {street} {r.choice(STREET_TYPES)}"
        if r.random() < 0.3:
            base += f", {r.choice(['Apt', 'Suite', 'Unit', '#'])} {r.randint(1, 40)}{r.choice(['', 'B', 'C'])}"
        if r.random() < 0.6:
            city, state = r.choice(CITIES)
            base += f", {city}, {state} {r.randint(10000, 99999)}"
        return base

    def card(self) -> str:
        r = self.r
        prefix = r.choice(["4", "51", "55", "37", "6011"])
        length = 15 if prefix == "37" else 16
        digits = [int(c) for c in prefix]
        while len(digits) < length - 1:
            digits.append(r.randint(0, 9))
        for check in range(10):
            candidate = digits + [check]
            total = 0
            for i, d in enumerate(reversed(candidate)):
                if i % 2 == 1:
                    d *= 2
                    d -= 9 if d > 9 else 0
                total += d
            if total % 10 == 0:
                break
        number = "".join(map(str, candidate))
        style = r.random()
        if length == 15:
            return f"{number[:4]} {number[4:10]} {number[10:]}" if style < 0.6 else number
        if style < 0.5:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        if style < 0.8:
            return "-".join(number[i : i + 4] for i in range(0, 16, 4))
        return number

    def ssn(self) -> str:
        r = self.r
        area = r.choice([r.randint(1, 665), r.randint(667, 899)])
        value = f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
        return value if r.random() < 0.85 else value.replace("-", " ")

    def iban(self) -> str:
        r = self.r
        country, length = r.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)])
        if country in ("GB", "NL"):
            bban = "".join(r.choice(string.ascii_uppercase) for _ in range(4))
            bban += "".join(str(r.randint(0, 9)) for _ in range(length - 4))
        else:
            bban = "".join(str(r.randint(0, 9)) for _ in range(length))
        numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
        check = 98 - int(numeric) % 97
        iban = f"{country}{check:02d}{bban}"
        if r.random() < 0.6:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return iban

    def ip(self) -> str:
        r = self.r
        return ".".join(str(r.randint(1, 254)) for _ in range(4))

    def date(self) -> str:
        r = self.r
        y, m, d = r.randint(1940, 2024), r.randint(1, 12), r.randint(1, 28)
        return r.choice(
            [
                f"{y}-{m:02d}-{d:02d}",
                f"{m:02d}/{d:02d}/{y}",
                f"{MONTHS[m - 1]} {d}, {y}",
                f"{d} {MONTHS[m - 1]} {y}",
            ]
        )

    def password(self) -> str:
        r = self.r
        word = r.choice(["sunflower", "Tr0ub4dor", "winter", "blue", "Kestrel", "orbit"])
        return f"{word}{r.randint(10, 9999)}{r.choice('!#$%&*')}"

    def aws_key(self) -> str:
        return "AKIA" + "".join(self.r.choice(string.ascii_uppercase + "234567") for _ in range(16))

    def api_token(self) -> str:
        r = self.r
        body = "".join(r.choice(string.ascii_letters + string.digits) for _ in range(36))
        return r.choice(["ghp_", "sk_live_", "xoxb-"]) + body


def _fill(template: str, g: _Gen) -> Sample:
    """Formats ``template`` left to right, recording the span of every PII slot."""
    r = g.r
    name = g.name()
    values = {
        "name": (name, "PERSON"),
        "other_name": (g.name(), "PERSON"),
        "first": (name.split()[0], "PERSON"),
        "last": (name.split()[-1], "PERSON"),
        "phone": (g.phone(), "PHONE_NUMBER"),
        "email": (g.email(name), "EMAIL_ADDRESS"),
        "address": (g.address(), "STREET_ADDRESS"),
        "card": (g.card(), "CREDIT_CARD"),
        "card_last4": (str(r.randint(1000, 9999)), None),
        "ssn": (g.ssn(), "US_SSN"),
        "iban": (g.iban(), "IBAN_CODE"),
        "ip": (g.ip(), "IP_ADDRESS"),
        "date": (g.date(), "DATE_TIME"),
        "nrp": (r.choice(NRP_TERMS), "NRP"),
        "city": (r.choice(CITIES)[0], "LOCATION"),
        "password": (g.password(), "CREDENTIAL"),
        "aws_key": (g.aws_key(), "CREDENTIAL"),
        "api_token": (g.api_token(), "CREDENTIAL"),
        "weekday": (r.choice(WEEKDAYS), None),
        "version": (f"{r.randint(1, 9)}.{r.randint(0, 30)}.{r.randint(0, 9)}", None),
        "count": (str(r.randint(2, 400)), None),
        "order": (str(r.randint(10000, 999999)), None),
        "ms": (str(r.randint(20, 900)), None),
        "ms2": (str(r.randint(5, 19)), None),
        "amount": (f"{r.randint(10, 9999):,}.{r.randint(0, 99):02d}", None),
        "pct": (str(r.randint(2, 60)), None),
    }
    out, spans, cursor = [], [], 0
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        cursor += len(literal)
        if field is None:
            continue
        value, entity = values[field]
        if entity:
            spans.append((cursor, cursor + len(value), entity))
        out.append(value)
        cursor += len(value)
    return Sample("".join(out), tuple(spans))


def generate(n: int = 2000, seed: int = 20261128, pii_share: float = 0.6) -> list[Sample]:
    """``n`` samples; a ``pii_share`` of them from PII templates (some with two sentences)."""
    g = _Gen(seed)
    samples = []
    for _ in range(n):
        if g.r.random() < pii_share:
            sample = _fill(g.r.choice(PII_TEMPLATES), g)
            if g.r.random() < 0.3:  # a PII sentence followed by ordinary text
                tail = _fill(g.r.choice(NONPII_TEMPLATES), g)
                sample = Sample(sample.text + " " + tail.text, sample.spans)
        else:
            sample = _fill(g.r.choice(NONPII_TEMPLATES), g)
            if g.r.random() < 0.4:
                more = _fill(g.r.choice(NONPII_TEMPLATES), g)
                sample = Sample(sample.text + " " + more.text, ())
        samples.append(sample)
    return samples
