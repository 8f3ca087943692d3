"""The eNotas simulator, exercised through raw HTTP like any client would."""

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fiscal_simulators.enotas import DEMO_COMPANY_ID, EnotasSimulator

from odoo.addons.fiscal_invoice_connector.providers.enotas import parse_nfse_xml

KEY = "demo-key"
COMPANY = "5a0c3e9b-7f21-4d88-a6b4-1e2f3c4d5e6f"
OTHER = "c1d2e3f4-0000-4aaa-8bbb-9ccc0ddd1eee"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class FakeClock:
    """Time stepped by hand, so intermediate statuses are checked without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def sim():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=None) as simulator:
        yield simulator


@pytest.fixture
def timed_sim():
    """Transitions take 10 (fake) seconds: the test moves ``sim.clock.now`` itself."""
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=10) as simulator:
        simulator.clock = FakeClock()
        yield simulator


CANCEL = {"codigoMotivoCancelamento": "1", "justificativaCancelamento": "Erro na emissão da nota"}


def call(sim, method, path, body=None, *, auth=f"Basic {KEY}", company=COMPANY, timeout=5, **params):
    headers = {"Authorization": auth} if auth is not None else {}
    url = f"{sim.base_url}/empresas/{company}{path}"
    return requests.request(method, url, json=body, headers=headers, params=params, timeout=timeout)


def note_body(**overrides):
    body = {
        "tipo": "NFS-e",
        "idExterno": "ODOO-ab12-42",
        "ambienteEmissao": "Homologacao",
        "enviarPorEmail": False,
        "dataCompetencia": "2025-01-10",
        "cliente": {
            "tipoPessoa": "F",
            "nome": "Cliente",
            "email": "a@b.com",
            "cpfCnpj": "38618699772",
            "endereco": {
                "pais": "Brasil",
                "uf": "MG",
                "cidade": "Belo Horizonte",
                "logradouro": "Rua Sergipe",
                "numero": "1014",
                "bairro": "Savassi",
                "cep": "30130174",
            },
        },
        "servico": {
            "descricao": "Consultoria",
            "aliquotaIss": 3.0,
            "issRetidoFonte": False,
            "codigoServicoMunicipio": "4.12",
            "itemListaServicoLC116": "4.12",
            "cnae": "8630504",
            "municipioPrestacaoServico": "3300704",
        },
        "valorTotal": 150.0,
    }
    body.update(overrides)
    return body


def create(sim, **overrides):
    response = call(sim, "POST", "/nfes", note_body(**overrides))
    assert response.status_code == 200, response.text
    return response.json()["nfeId"]


def get(sim, nfe_id):
    response = call(sim, "GET", f"/nfes/{nfe_id}")
    assert response.status_code == 200, response.text
    return response.json()


def messages(response):
    body = response.json()
    assert isinstance(body, list) and all(set(item) == {"codigo", "mensagem"} for item in body)
    return [item["mensagem"] for item in body]


def authorized(sim, **overrides):
    nfe_id = create(sim, **overrides)
    sim.complete(nfe_id)
    return get(sim, nfe_id)


# ---------------------------------------------------------------------------
# Authentication, companies
# ---------------------------------------------------------------------------


def test_base_url_is_the_api_root_and_the_company_is_readable(sim):
    assert sim.base_url.endswith("/v1")
    response = call(sim, "GET", "")
    assert response.status_code == 200
    assert response.json()["razaoSocial"] == "Empresa Demonstração Ltda" and response.json()["id"] == COMPANY
    assert "_authorized" not in response.json()
    unknown = call(sim, "GET", "", company=OTHER)
    assert unknown.status_code == 404 and messages(unknown) == ["Empresa não encontrada"]


@pytest.mark.parametrize(
    "auth",
    [None, "Basic wrong", f"Bearer {KEY}", "Basic " + base64.b64encode(KEY.encode()).decode(), f"Basic {KEY}x"],
)
def test_only_the_raw_key_in_basic_is_accepted(sim, auth):
    response = call(sim, "POST", "/nfes", note_body(), auth=auth)
    assert response.status_code == 401
    assert response.json() == [{"codigo": "ApiKeyInvalida", "mensagem": "Api Key inválida"}]
    assert sim.notes == {}


def test_company_not_allowed_for_the_key_is_403(sim):
    sim.add_company(OTHER, "Outra", authorized=False)
    response = call(sim, "POST", "/nfes", note_body(), company=OTHER)
    assert response.status_code == 403 and messages(response)[0].startswith("Acesso negado")
    assert sim.notes == {}


# ---------------------------------------------------------------------------
# Emission and authorization
# ---------------------------------------------------------------------------


def test_note_goes_through_authorization_after_the_delay(timed_sim):
    nfe_id = create(timed_sim)
    note = get(timed_sim, nfe_id)
    assert note["status"] == "AguardandoAutorizacao" and note["numero"] is None
    assert note["idExterno"] == "ODOO-ab12-42" and note["ambienteEmissao"] == "Homologacao"
    assert note["valorTotal"] == 150.0 and note["cliente"]["nome"] == "Cliente"
    timed_sim.clock.now += 5
    assert get(timed_sim, nfe_id)["status"] == "EmProcessoDeAutorizacao"
    timed_sim.clock.now += 5
    note = get(timed_sim, nfe_id)
    assert note["status"] == "Autorizada" and note["numero"] == "1"
    assert len(note["codigoVerificacao"]) == 8 and note["dataAutorizacao"]
    # Download links on a storage host: no key, not counted by the rate limit.
    assert "/simulator-files/nfse/" in note["linkDownloadPDF"] and note["linkDownloadPDF"].endswith(".pdf")
    assert note["linkDownloadXML"] == note["linkDownloadPDF"][:-4] + ".xml"


def test_download_links_serve_the_files_without_key_or_budget(sim):
    nfe_id = create(sim)
    note = get(sim, nfe_id)
    assert requests.get(note["linkDownloadPDF"], timeout=5).status_code == 404  # not authorized yet
    sim.complete(nfe_id)
    sim.rate_limit_per_minute = 1
    assert call(sim, "GET", f"/nfes/{nfe_id}").status_code == 200  # takes the only slot
    pdf = requests.get(note["linkDownloadPDF"], timeout=5)
    xml = requests.get(note["linkDownloadXML"], timeout=5)
    assert call(sim, "GET", f"/nfes/{nfe_id}").status_code == 429
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert xml.status_code == 200 and parse_nfse_xml(xml.content)["number"] == "1"


def test_zero_delay_authorizes_at_the_first_read():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0) as sim:
        nfe_id = create(sim)
        assert get(sim, nfe_id)["status"] == "Autorizada"


def test_numbering_is_per_environment(sim):
    numbers = [authorized(sim, idExterno=f"H{n}")["numero"] for n in range(2)] + [
        authorized(sim, idExterno="P0", ambienteEmissao="Producao")["numero"]
    ]
    assert numbers == ["1", "2", "1"]
    assert [n["idExterno"] for n in sim.final_notes()] == ["H0", "H1", "P0"]


def test_email_flag_is_reported_once_authorized(sim):
    note = authorized(sim, enviarPorEmail=True)
    assert note["enviadaPorEmail"] is True
    assert authorized(sim, idExterno="NO-MAIL")["enviadaPorEmail"] is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"valorTotal": None}, "valorTotal é obrigatório"),
        ({"valorTotal": 0}, "valorTotal deve ser um número maior que zero"),
        ({"ambienteEmissao": None}, "ambienteEmissao é obrigatório (Producao ou Homologacao)"),
        ({"ambienteEmissao": "Teste"}, "ambienteEmissao inválido: Teste"),
        ({"tipo": "NF-e"}, "tipo inválido (NF-e): esta API emite NFS-e"),
        ({"dataCompetencia": "10/01/2025"}, "dataCompetencia inválida (formato AAAA-MM-DD)"),
        ({"enviadaPorEmail": True, "enviarPorEmail": "sim"}, "enviarPorEmail deve ser true ou false"),
        ({"cliente": None}, "cliente é obrigatório"),
        ({"servico": {"descricao": ""}}, "servico.descricao é obrigatório"),
        ({"servico": {"descricao": "X"}}, "servico.codigoServicoMunicipio é obrigatório para o município"),
        ({"servico": {"descricao": "X", "itemListaServicoLC116": "1", "aliquotaIss": 7}}, "entre 2 e 5"),
        ({"servico": {"descricao": "X", "itemListaServicoLC116": "1", "municipioPrestacaoServico": "33"}}, "IBGE"),
    ],
)
def test_validation_errors_are_400_with_the_error_array(sim, overrides, message):
    response = call(sim, "POST", "/nfes", note_body(**overrides))
    assert response.status_code == 400
    assert any(message in m for m in messages(response)), messages(response)
    assert sim.notes == {}


@pytest.mark.parametrize(
    "client_overrides, message",
    [
        (
            {"cpfCnpj": "386.186.997-72"},
            "cliente.cpfCnpj deve conter apenas os 11 (CPF) ou 14 (CNPJ, alfanumérico) caracteres",
        ),
        ({"cpfCnpj": "38618699700"}, "cliente.cpfCnpj inválido: 38618699700"),
        ({"tipoPessoa": "J"}, "cliente.tipoPessoa não corresponde ao cpfCnpj"),
        ({"nome": " "}, "cliente.nome é obrigatório"),
        ({"email": "nope"}, "cliente.email inválido"),
        ({"endereco": None}, "cliente.endereco é obrigatório"),
        ({"endereco": {"uf": "XX", "cep": "30130-174"}}, "cliente.endereco.uf inválida: XX"),
        ({"endereco": {"uf": "MG", "cep": "30130-174"}}, "cliente.endereco.cep deve conter 8 dígitos"),
        ({"endereco": {"uf": "MG"}}, "cliente.endereco.bairro é obrigatório"),
    ],
)
def test_customer_validation(sim, client_overrides, message):
    client = {**note_body()["cliente"], **client_overrides}
    response = call(sim, "POST", "/nfes", note_body(cliente=client))
    assert response.status_code == 400
    assert message in messages(response), messages(response)


def test_all_problems_are_listed_at_once(sim):
    response = call(sim, "POST", "/nfes", note_body(valorTotal=None, servico={}, cliente={"nome": "X"}))
    assert len(messages(response)) >= 4


def test_body_must_be_a_json_object(sim):
    headers = {"Authorization": f"Basic {KEY}", "Content-Type": "application/json"}
    url = f"{sim.base_url}/empresas/{COMPANY}/nfes"
    for data in (b"{not json", b"[1, 2]"):
        response = requests.post(url, data=data, headers=headers, timeout=5)
        assert response.status_code == 400 and messages(response)


# ---------------------------------------------------------------------------
# idExterno: uniqueness, re-send after Negada, lookup
# ---------------------------------------------------------------------------


def test_id_externo_is_unique_across_environments(sim):
    nfe_id = create(sim)
    for environment in ("Homologacao", "Producao"):
        response = call(sim, "POST", "/nfes", note_body(ambienteEmissao=environment))
        assert response.status_code == 400
        (message,) = messages(response)
        assert message.startswith("Já existe uma nota com o idExterno ODOO-ab12-42")
        assert response.json()[0]["codigo"] == "IdExternoDuplicado"
    assert list(sim.notes) == [nfe_id]
    # Another company has its own idExterno namespace.
    sim.add_company(OTHER, "Outra")
    assert call(sim, "POST", "/nfes", note_body(), company=OTHER).status_code == 200


def test_negada_note_is_resubmitted_with_the_same_id_externo(sim):
    nfe_id = create(sim, servico={**note_body()["servico"], "descricao": "Consultoria REJEITAR"})
    sim.complete(nfe_id)
    note = get(sim, nfe_id)
    assert note["status"] == "Negada" and note["motivoStatus"] == "Código de serviço inválido para o município"
    assert note["numero"] is None

    assert create(sim) == nfe_id  # fixed data, same idExterno: same note, authorized again
    assert get(sim, nfe_id)["status"] == "AguardandoAutorizacao"
    assert get(sim, nfe_id)["servico"]["descricao"] == "Consultoria"
    sim.complete(nfe_id)
    note = get(sim, nfe_id)
    assert note["status"] == "Autorizada" and note["motivoStatus"] is None and note["numero"] == "1"
    assert len(sim.notes) == 1
    # Once authorized, the idExterno is taken again.
    assert call(sim, "POST", "/nfes", note_body()).status_code == 400


def test_negada_note_is_resubmitted_by_its_nfe_id(sim):
    nfe_id = create(sim, servico={**note_body()["servico"], "descricao": "REJEITAR"})
    sim.complete(nfe_id)
    assert create(sim, id=nfe_id, idExterno=None) == nfe_id
    sim.complete(nfe_id)
    assert get(sim, nfe_id)["status"] == "Autorizada"
    refused = call(sim, "POST", "/nfes", note_body(id=nfe_id))
    assert refused.status_code == 400 and "não pode ser alterada" in messages(refused)[0]


def test_reject_when_decides_refusals():
    def reject(note):
        if note["valorTotal"] > 1000:
            return "Valor acima do limite do município"
        return note["cliente"]["nome"] == "Bloqueado"

    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=None, reject_when=reject) as sim:
        big = create(sim, valorTotal=5000, idExterno="BIG")
        blocked = create(sim, idExterno="BLOCKED", cliente={**note_body()["cliente"], "nome": "Bloqueado"})
        fine = create(sim, idExterno="FINE", servico={**note_body()["servico"], "descricao": "REJEITAR"})
        for nfe_id in (big, blocked, fine):
            sim.complete(nfe_id)
        assert get(sim, big)["motivoStatus"] == "Valor acima do limite do município"
        assert get(sim, blocked)["motivoStatus"] == "Código de serviço inválido para o município"
        assert get(sim, fine)["status"] == "Autorizada"  # a reject_when replaces the REJEITAR rule


def test_get_by_id_externo_is_url_escaped_and_per_company(sim):
    nfe_id = create(sim, idExterno="INV/2025/0001 #1")
    response = call(sim, "GET", "/nfes/porIdExterno/INV%2F2025%2F0001%20%231")
    assert response.status_code == 200 and response.json()["id"] == nfe_id
    assert call(sim, "GET", "/nfes/porIdExterno/INV%2F2025%2F0002").status_code == 404
    sim.add_company(OTHER, "Outra")
    assert call(sim, "GET", "/nfes/porIdExterno/INV%2F2025%2F0001%20%231", company=OTHER).status_code == 404
    assert call(sim, "GET", f"/nfes/{nfe_id}", company=OTHER).status_code == 404
    missing = call(sim, "GET", "/nfes/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and messages(missing) == ["Nota fiscal não encontrada"]


def test_list_filters_by_status(sim):
    authorized(sim, idExterno="A")
    create(sim, idExterno="B")
    listing = call(sim, "GET", "/nfes", pageNumber=0, pageSize=100, filter="status eq 'Autorizada'").json()
    assert listing["totalRecords"] == 1 and [n["idExterno"] for n in listing["data"]] == ["A"]
    assert call(sim, "GET", "/nfes").json()["totalRecords"] == 2


# ---------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------


def test_cancellation_is_asynchronous(timed_sim):
    nfe_id = create(timed_sim)
    timed_sim.clock.now += 10
    assert get(timed_sim, nfe_id)["status"] == "Autorizada"
    response = call(timed_sim, "DELETE", f"/nfes/{nfe_id}", CANCEL)
    assert response.status_code == 200 and response.json() == {"nfeId": nfe_id}
    assert get(timed_sim, nfe_id)["status"] == "SolicitandoCancelamento"
    again = call(timed_sim, "DELETE", f"/nfes/{nfe_id}", CANCEL)
    assert again.status_code == 400 and "processo de cancelamento" in messages(again)[0]
    timed_sim.clock.now += 5
    assert get(timed_sim, nfe_id)["status"] == "EmProcessoDeCancelamento"
    timed_sim.clock.now += 5
    note = get(timed_sim, nfe_id)
    assert note["status"] == "Cancelada" and note["dataCancelamento"] and note["numero"] == "1"
    assert messages(call(timed_sim, "DELETE", f"/nfes/{nfe_id}", CANCEL)) == ["A nota fiscal já está cancelada"]
    assert timed_sim.final_notes() == [] and len(timed_sim.final_notes(include_canceled=True)) == 1


def test_cancellation_denied_then_asked_again(sim):
    sim.deny_cancellation = True
    nfe_id = authorized(sim)["id"]
    call(sim, "DELETE", f"/nfes/{nfe_id}", CANCEL)
    sim.complete(nfe_id)
    note = get(sim, nfe_id)
    assert note["status"] == "CancelamentoNegado" and "prazo" in note["motivoStatus"]
    sim.deny_cancellation = False
    assert call(sim, "DELETE", "/nfes/porIdExterno/ODOO-ab12-42", CANCEL).status_code == 200
    sim.complete(nfe_id)
    assert get(sim, nfe_id)["status"] == "Cancelada"


def test_only_authorized_notes_can_be_canceled(sim):
    pending = create(sim, idExterno="PENDING")
    assert call(sim, "DELETE", f"/nfes/{pending}", CANCEL).status_code == 400
    rejected = create(sim, idExterno="REJ", servico={**note_body()["servico"], "descricao": "REJEITAR"})
    sim.complete(rejected)
    response = call(sim, "DELETE", f"/nfes/{rejected}", CANCEL)
    assert response.status_code == 400 and messages(response) == ["Uma nota fiscal negada não pode ser cancelada"]
    with pytest.raises(ValueError):
        sim.complete(rejected)  # nothing under way


# ---------------------------------------------------------------------------
# PDF and XML
# ---------------------------------------------------------------------------


def test_pdf_and_xml_of_an_authorized_note(sim):
    nfe_id = create(sim)
    for fmt in ("pdf", "xml"):
        response = call(sim, "GET", f"/nfes/{nfe_id}/{fmt}")
        assert response.status_code == 400 and "não está autorizada" in messages(response)[0]
    sim.complete(nfe_id)
    note = get(sim, nfe_id)

    pdf = call(sim, "GET", f"/nfes/{nfe_id}/pdf")
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and pdf.content.rstrip().endswith(b"%%EOF")
    assert note["codigoVerificacao"].encode() in pdf.content

    xml = call(sim, "GET", "/nfes/porIdExterno/ODOO-ab12-42/xml")
    assert xml.status_code == 200 and xml.headers["Content-Type"].startswith("application/xml")
    assert b"<CompNfse" in xml.content and b"<Cpf>38618699772</Cpf>" in xml.content
    parsed = parse_nfse_xml(xml.content)
    assert parsed["number"] == note["numero"] and parsed["verification_code"] == note["codigoVerificacao"]
    assert str(parsed["total"]) == "150.00" and parsed["canceled"] is False


def test_json_can_leave_the_number_to_the_xml():
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0, omit_number_in_json=True) as sim:
        nfe_id = create(sim)
        note = get(sim, nfe_id)
        assert note["status"] == "Autorizada" and note["numero"] is None and note["codigoVerificacao"] is None
        assert parse_nfse_xml(call(sim, "GET", f"/nfes/{nfe_id}/xml").content)["number"] == "1"


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------


class Receiver:
    """A small local webhook receiver; answers the queued statuses, then 200."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fiscal/enotas/webhook/s3cr3t-t0ken"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_webhook_is_posted_for_each_final_status(sim, receiver):
    sim.webhook_url = receiver.url
    ok = create(sim, idExterno="OK")
    bad = create(sim, idExterno="BAD", servico={**note_body()["servico"], "descricao": "REJEITAR"})
    assert sim.webhooks_sent == []  # nothing final yet
    sim.complete(ok)
    sim.complete(bad)
    sim.wait_for_webhooks(2)
    call(sim, "DELETE", f"/nfes/{ok}", CANCEL)
    sim.complete(ok)
    sim.deny_cancellation = True
    other = authorized(sim, idExterno="OTHER")["id"]
    call(sim, "DELETE", f"/nfes/{other}", CANCEL)
    sim.complete(other)
    deliveries = sim.wait_for_webhooks(5)

    statuses = sorted((d["payload"]["nfeIdExterno"], d["status"]) for d in deliveries)
    assert statuses == [
        ("BAD", "Negada"), ("OK", "Autorizada"), ("OK", "Cancelada"),
        ("OTHER", "Autorizada"), ("OTHER", "CancelamentoNegado"),
    ]  # fmt: skip
    assert all(d["http_status"] == 200 and d["attempt"] == 1 and d["url"] == receiver.url for d in deliveries)
    path, content_type, payload = next(r for r in receiver.received if r[2]["nfeStatus"] == "Negada")
    assert path == "/fiscal/enotas/webhook/s3cr3t-t0ken" and content_type.startswith("application/json")
    assert {
        "tipo", "empresaId", "nfeId", "nfeIdExterno", "nfeStatus", "nfeMotivoStatus", "nfeNumero", "nfeSerie",
        "nfeChaveAcesso", "nfeDataEmissao", "nfeDataAutorizacao", "nfeNumeroProtocolo", "nfeDigestValue",
        "nfeLinkDanfe", "nfeLinkXml", "nfeLinkConsultaPorChaveAcesso", "conteudoQRCode", "nfeWebHookMetadados",
    } == set(payload)  # fmt: skip
    assert payload["nfeId"] == bad and payload["empresaId"] == COMPANY
    assert payload["nfeMotivoStatus"] == "Código de serviço inválido para o município"


def test_webhook_fires_without_anybody_polling(receiver):
    with EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0.05, webhook_url=receiver.url) as sim:
        nfe_id = create(sim)
        (delivery,) = sim.wait_for_webhooks(1, timeout=3)
        assert delivery["nfe_id"] == nfe_id and delivery["status"] == "Autorizada"
        assert delivery["payload"]["nfeNumero"] == "1"
        assert [r["method"] for r in sim.requests] == ["POST"]


def test_webhook_is_retried_after_a_failure_and_can_be_redelivered(sim):
    failing = Receiver(statuses=[500, 503])
    try:
        sim.webhook_url = failing.url
        sim.webhook_retry_delay = 0.01
        nfe_id = authorized(sim)["id"]
        deliveries = sim.wait_for_webhooks(3)
        assert [(d["attempt"], d["http_status"]) for d in deliveries] == [(1, 500), (2, 503), (3, 200)]
        record = sim.redeliver(nfe_id)
        assert record["http_status"] == 200 and record["payload"]["nfeStatus"] == "Autorizada"
        assert len(failing.received) == 4
    finally:
        failing.close()


def test_unreachable_webhook_is_recorded_not_raised(sim):
    sim.webhook_url = "http://127.0.0.1:9/unreachable"
    sim.webhook_attempts = 2
    sim.webhook_retry_delay = 0.01
    nfe_id = authorized(sim)["id"]
    deliveries = sim.wait_for_webhooks(2)
    assert all(d["http_status"] is None and d["error"] for d in deliveries)
    assert get(sim, nfe_id)["status"] == "Autorizada"
    sim.webhook_url = None
    with pytest.raises(ValueError):
        sim.redeliver(nfe_id)


# ---------------------------------------------------------------------------
# Transport: request log, faults, rate limit, reset, CLI
# ---------------------------------------------------------------------------


def test_request_log_never_contains_the_api_key(sim):
    create(sim)
    call(sim, "GET", "", auth="Basic another-wrong-key")
    log = repr(sim.requests)
    assert KEY not in log and "another-wrong-key" not in log
    assert sim.requests[0] == {"method": "POST", "path": f"/v1/empresas/{COMPANY}/nfes", "status": 200, "fault": None}
    assert sim.requests[1]["status"] == 401


def test_lost_answer_still_creates_the_note(sim):
    sim.inject("reset", method="POST", when="after")
    with pytest.raises(requests.ConnectionError):
        call(sim, "POST", "/nfes", note_body())
    (note,) = sim.find(idExterno="ODOO-ab12-42")
    assert note["status"] == "AguardandoAutorizacao"
    assert sim.requests[0]["processed_status"] == 200


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_injected_client_errors_use_the_error_array(sim, status):
    sim.inject(status)
    response = call(sim, "GET", "")
    assert response.status_code == status and messages(response)


def test_rate_limit_answers_429_with_the_error_array(sim):
    sim.rate_limit_per_minute = 1
    assert call(sim, "GET", "").status_code == 200
    refused = call(sim, "GET", "")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert messages(refused) == ["Limite de requisições excedido"]


def test_reset_clears_notes_and_numbering(sim):
    authorized(sim)
    sim.reset()
    assert sim.notes == {} and sim.requests == [] and sim.webhooks_sent == []
    assert authorized(sim)["numero"] == "1"


def test_cli_serves_until_sigterm_without_printing_the_key():
    secret = "cli-secret-enotas-key"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "fiscal_simulators.enotas", "--port", "0", "--api-key", secret,
               "--company-id", COMPANY, "--authorization-delay", "0"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "the simulator printed nothing"
        line = proc.stdout.readline().decode()
        assert line.startswith("eNotas simulator listening on http://127.0.0.1:") and line.rstrip().endswith("/v1")
        base_url = line.rsplit(" ", 1)[1].strip()
        headers = {"Authorization": f"Basic {secret}"}
        response = requests.get(f"{base_url}/empresas/{COMPANY}", headers=headers, timeout=5)
        assert response.status_code == 200
        assert requests.get(f"{base_url}/empresas/{DEMO_COMPANY_ID}", headers=headers, timeout=5).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate()
        assert secret.encode() not in line.encode() + out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_restart_keeps_the_url_and_the_clock_thread_stops():
    sim = EnotasSimulator(api_key=KEY, company_id=COMPANY, authorization_delay=0.05)
    with sim:
        url = sim.base_url
        nfe_id = create(sim)
    assert sim._clock_thread is None
    with sim:
        assert sim.base_url == url
        deadline = time.monotonic() + 3
        while sim.notes[nfe_id]["status"] != "Autorizada":  # advanced by the clock, no read needed
            assert time.monotonic() < deadline
            time.sleep(0.01)
