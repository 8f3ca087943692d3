"""A seeded Brazilian corpus: every NFS-e declares Odoo's figures, through eNotas and InvoiCy.

``random.Random(SEED)`` generates the sales of each provider: CPF and CNPJ customers (digits and
alphanumeric), the four tax regimes (the reform fields then sent), customers withholding ISS or
not, federal withholdings (PIS, COFINS, CSLL, IR, INSS) from the taxes on the lines, several
service codes with their ISS rates, quantities with decimals and line discounts. A few sales mix
two national codes on purpose (each line with its service's ISS rate). They go through the real
outbox (confirm, run the queue) against the simulators, which compute the base, the ISS withheld
and the net value from what was sent. The account splits sales of several codes (the choice
"refuse" is the default, tested in test_nfse_2026). Every sale ends:

* **matched**: its authorized notes (one, or one per national code for the sales mixing two)
  declare together a service value less unconditional discounts equal to Odoo's untaxed amount,
  an ISS withheld and each federal withholding equal to Odoo's tax amounts of that kind (one tax
  group per kind), and a net value (computed by the simulator) equal to Odoo's total.

The expected figures come from Odoo's own amounts (``amount_untaxed``, ``amount_total``, the tax
totals per group), never from the connector. A summary line per provider is printed; the figures
are in docs/mapping-rules.md (Brazil).
"""

import logging
import random
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

from stdnum.br import cnpj, cpf

from odoo import Command
from odoo.tests import tagged

from .common import FiscalTestCommon

_logger = logging.getLogger(__name__)

SEED = 20260101
SALES_PER_REGIME = 26  # 104 sales per provider
REGIMES = ("simples", "mei", "presumido", "real")
CENT = Decimal("0.01")
# (national code, ISS rate) of the services sold; two products per code.
SERVICES = (("010701", 2.0), ("080201", 3.0), ("170101", 5.0))
FEDERAL = (("pis", 0.65), ("cofins", 3.0), ("csll", 1.0), ("ir", 1.5), ("inss", 11.0))
KINDS = ("iss", "pis", "cofins", "csll", "ir", "inss")


def _dec(value):
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def _cpf_digits(body):
    """The two check digits of a 9-digit CPF body (python-stdnum keeps its own private)."""
    digits = [int(c) for c in body]
    for _ in range(2):
        total = sum(d * w for d, w in zip(digits, range(len(digits) + 1, 1, -1), strict=True))
        digits.append(total * 10 % 11 % 10)
    return "".join(map(str, digits[-2:]))


def _alnum_cnpj(rng):
    base = "".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8)) + "0001"
    weights = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)

    def digit(body):
        total = sum((ord(c) - 48) * w for c, w in zip(body, weights[-len(body) :], strict=True))
        return "0" if total % 11 < 2 else str(11 - total % 11)

    first = digit(base)
    return base + first + digit(base + first)


class NfseCorpus:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Tax, Group = cls.env["account.tax"], cls.env["account.tax.group"]
        groups = {
            kind: Group.create({"name": f"{kind.upper()} retido", "company_id": cls.company.id}) for kind in KINDS
        }
        cls.groups = {group.id: kind for kind, group in groups.items()}

        def withholding(kind, rate):
            return Tax.create(
                {
                    "name": f"{kind.upper()} retido {rate}% (corpus)",
                    "amount": -rate,
                    "amount_type": "percent",
                    "type_tax_use": "sale",
                    "company_id": cls.company.id,
                    "tax_group_id": groups[kind].id,
                    "fiscal_nfse_withholding": kind,
                }
            )

        cls.federal = {kind: withholding(kind, rate) for kind, rate in FEDERAL}
        cls.iss_tax = {rate: withholding("iss", rate) for _code, rate in SERVICES}
        cls.services = []
        for code, rate in SERVICES:
            for variant in ("A", "B"):
                product = cls.env["product.product"].create(
                    {
                        "name": f"Serviço {code}-{variant}",
                        "default_code": f"S{code}{variant}",
                        "type": "service",
                        "invoice_policy": "order",
                        "taxes_id": [Command.clear()],
                        "fiscal_iss_rate": rate,
                        "fiscal_service_code": f"{code[:2]}.{code[2:4]}",
                        "fiscal_national_code": code,
                        "fiscal_nbs_code": "1150210" + code[-2:],
                        "fiscal_reform_class": "000001",
                        "fiscal_operation_indicator": "100301",
                    }
                )
                cls.services.append((product, code, rate))

    def _customers(self, rng):
        people, companies = [], []
        for index in range(12):
            body = f"{rng.randrange(10**8, 10**9):09d}"
            vat = cpf.format(body + _cpf_digits(body))
            people.append(self.customer.copy({"name": f"Pessoa {index}", "vat": vat}))
        for index in range(12):
            if index % 4 == 3:
                vat = _alnum_cnpj(rng)
            else:
                body = f"{rng.randrange(10**7, 10**8):08d}0001"
                vat = cnpj.format(body + cnpj.calc_check_digits(body))
            companies.append(
                self.customer.copy(
                    {
                        "name": f"Empresa {index} Ltda",
                        "is_company": True,
                        "vat": vat,
                        "fiscal_iss_withholding": rng.choice(("yes", "no", "account")),
                    }
                )
            )
        return people, companies

    def _sale(self, rng, people, companies, mixed):
        company = rng.random() < 0.6
        partner = rng.choice(companies if company else people)
        withholds_iss = company and (
            partner.fiscal_iss_withholding == "yes"
            or (partner.fiscal_iss_withholding == "account" and self.account.iss_withheld)
        )
        federal = self.env["account.tax"]
        if company:
            for kind, _rate in FEDERAL:
                if rng.random() < 0.4:
                    federal |= self.federal[kind]
        product, code, rate = rng.choice(self.services)
        pool = [s for s in self.services if s[1] == code]
        lines = []
        for _ in range(rng.randint(1, 3)):
            line_product = rng.choice(pool)[0]
            quantity = rng.choice((1, 2, 3, 5, 0.5, 2.5, 1.25, 10))
            price = round(rng.uniform(10, 2500), rng.choice((0, 2, 2, 3)))
            discount = rng.choice((0, 0, 0, 5, 10, 12.5, 33.33))
            lines.append((line_product, quantity, price, discount))
        if mixed:
            other = next(s for s in self.services if s[1] != code)
            lines.append((other[0], 1, 100.0, 0))

        def taxes(product):  # the ISS withheld at the line's service's rate
            iss_rate = next(s[2] for s in self.services if s[0] == product)
            return federal | (self.iss_tax[iss_rate] if withholds_iss else self.env["account.tax"])

        order = self.env["sale.order"].create(
            {
                "partner_id": partner.id,
                "pricelist_id": self.pricelist.id,
                "order_line": [
                    Command.create(
                        {
                            "product_id": p.id,
                            "product_uom_qty": q,
                            "price_unit": price,
                            "discount": d,
                            "tax_ids": [Command.set(taxes(p).ids)],
                        }
                    )
                    for p, q, price, d in lines
                ],
            }
        )
        return order, bool(company), withholds_iss

    def _odoo_figures(self, order):
        withheld = dict.fromkeys(KINDS, Decimal(0))
        for subtotal in order.tax_totals["subtotals"]:
            for group in subtotal["tax_groups"]:
                withheld[self.groups[group["id"]]] += -_dec(group["tax_amount_currency"])
        return {
            "base": _dec(order.amount_untaxed),
            "net": _dec(order.amount_total),
            **{("iss_withheld" if kind == "iss" else kind): value for kind, value in withheld.items()},
        }

    def _provider_figures(self, notes):
        """What the notes declare together."""
        figures = Counter()
        for remote in notes:
            for key, value in self.adapter.nfse_figures(remote).items():
                figures[key] += Decimal(str(value)).quantize(CENT)
        figures["base"] = figures.pop("services") - figures.pop("discounts")
        return dict(figures)

    def test_corpus_every_note_declares_odoo_figures(self):
        # The municipality computes ISS (and the federal withholdings) on the note's total: Odoo must
        # too, or a sale of several lines may differ by a cent (refused, saying so).
        self.company.tax_calculation_rounding_method = "round_globally"
        self.account.nfse_multiple_codes = "split"
        rng = random.Random(SEED)
        people, companies = self._customers(rng)
        outcome, totals = Counter(), Counter()
        mismatches = []
        started = time.monotonic()
        for regime in REGIMES:
            self.account.tax_regime = regime
            self.adapter.set_regime(regime)
            self.account.iss_withheld = regime in ("presumido", "real")  # the account's default for companies
            cases = []
            for index in range(SALES_PER_REGIME):
                mixed = index % 12 == 11
                order, company, withholds = self._sale(rng, people, companies, mixed)
                order.action_confirm()
                cases.append((order, mixed, company, withholds))
            orders = self.env["sale.order"].concat(*(order for order, *_ in cases))
            for _ in range(6):
                docs = orders.fiscal_document_ids  # with the parts queued while splitting
                if not docs.filtered(lambda d: d.state in ("to_send", "sending")):
                    break
                self.make_due(docs)
                self.run_queue()
            for order, mixed, company, withholds in cases:
                docs = order.fiscal_document_ids.sorted("split_part")
                self.assertEqual(docs.mapped("split_part"), [1, 2] if mixed else [0], order.name)
                for doc in docs:
                    self.assertEqual(doc.state, "issued", f"{order.name}: {doc.last_error}")
                remote = [self.sim_docs_for(doc) for doc in docs]
                self.assertEqual([len(found) for found in remote], [1] * len(docs), f"{order.name}: one note each")
                notes = [found[0] for found in remote]
                odoo, provider = self._odoo_figures(order), self._provider_figures(notes)
                if odoo != provider:
                    mismatches.append((order.name, odoo, provider))
                outcome["matched"] += 1
                outcome["split into one note per national code"] += mixed
                outcome["CNPJ customer" if company else "CPF customer"] += 1
                outcome["ISS withheld"] += withholds
                outcome["federal withholding"] += any(odoo[k] for k in ("pis", "cofins", "csll", "ir", "inss"))
                if regime in ("presumido", "real"):
                    for note in notes:
                        fields_sent = self.adapter.nfse_fields(note)
                        sent = (fields_sent["national_code"], fields_sent["nbs_code"], fields_sent["reform_class"])
                        self.assertTrue(all(sent), sent)
                    outcome["with reform fields"] += 1
                totals["base"] += odoo["base"]
                totals["withheld"] += odoo["base"] - odoo["net"]
                totals["net"] += odoo["net"]
            self.sim.reset()
        self.assertEqual(mismatches, [], "every note declares Odoo's figures")
        summary = (
            f"NFS-e corpus {self.provider}: {SALES_PER_REGIME * len(REGIMES)} sales, "
            + ", ".join(f"{key} {value}" for key, value in sorted(outcome.items()))
            + f"; base R$ {totals['base']}, withheld R$ {totals['withheld']}, net R$ {totals['net']}; "
            f"mismatches {len(mismatches)}; {time.monotonic() - started:.0f} s"
        )
        print(summary)  # noqa: T201 - the corpus figures (docs/mapping-rules.md)
        _logger.info(summary)


@tagged("post_install", "-at_install")
class TestNfseCorpusEnotas(NfseCorpus, FiscalTestCommon):
    provider = "enotas"


@tagged("post_install", "-at_install")
class TestNfseCorpusInvoicy(NfseCorpus, FiscalTestCommon):
    provider = "invoicy"
