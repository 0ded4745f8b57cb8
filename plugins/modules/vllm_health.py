# Copyright: (c) 2026, gpubox.llm maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0), or at your option
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vllm_health
short_description: Wait until an OpenAI-compatible server (vLLM) really serves requests
version_added: "0.1.0"
description:
  - Polls an OpenAI-compatible server, such as C(vllm serve), until it answers the chosen O(probe), or fails
    after O(timeout) seconds.
  - While the server is starting, refused or reset connections, request timeouts and HTTP 5xx answers (for example
    V(503)) as well as V(408) and V(429) are retried every O(interval) seconds.
  - Fails at once, without waiting out O(timeout), when the server answers V(401) or V(403) (the API key is missing
    or wrong), when O(served_model_name) is not among the models the server lists, or on any other HTTP 4xx answer.
  - On timeout the message names what the module was waiting for and the last HTTP status or connection error.
  - With O(systemd_unit), it also fails soon after the systemd service that runs the server crashes or stops,
    instead of waiting out O(timeout) while systemd restarts it again and again.
  - The API key is sent as a Bearer token and is never shown in messages.
  - The module only reads; it never reports a change.
author:
  - gpubox.llm maintainers (@gpubox)
options:
  url:
    description:
      - Base URL of the server, for example V(http://127.0.0.1:8000).
      - A trailing V(/v1) or V(/) is accepted and removed; V(/health) and V(/v1/...) are appended to what remains.
    type: str
    required: true
  api_key:
    description:
      - "API key the server was started with (C(vllm serve --api-key) or E(VLLM_API_KEY)), sent as
        C(Authorization: Bearer <key>)."
      - vLLM does not protect C(/health), but it does protect C(/v1/models) and C(/v1/completions).
    type: str
  served_model_name:
    description:
      - Model name that must appear in C(/v1/models), that is the C(--served-model-name) of vLLM (or the model path
        when that was not set).
      - When the server lists models and this name is not among them, the module fails at once and lists the models
        that are served.
      - With O(probe=completion) this is the model asked for one token; when unset, the first listed model is used.
      - With O(probe=health), C(/v1/models) is only queried when this is set.
    type: str
  probe:
    description:
      - What counts as ready.
      - V(health) waits for C(GET /health) to answer V(200).
      - V(models) waits for C(GET /v1/models) to answer V(200) with at least one model.
      - V(completion) does what V(models) does, then waits for C(POST /v1/completions) with C(max_tokens=1) to
        answer V(200); this proves the engine really generates.
      - V(embedding) does what V(models) does, then waits for C(POST /v1/embeddings) to return a vector; use it
        for embedding models (C(--runner pooling)), which do not serve completions.
    type: str
    choices: [health, models, completion, embedding]
    default: completion
  timeout:
    description:
      - Seconds to wait in all before failing. V(0) makes one single attempt.
    type: int
    default: 600
  interval:
    description:
      - Seconds between the starts of two attempts. Keep it small so that the play moves on soon after the server is
        ready.
    type: float
    default: 1.0
  request_timeout:
    description:
      - Seconds one HTTP request may take. It is also capped by the time left before O(timeout), but not below one
        second.
    type: float
    default: 30.0
  validate_certs:
    description:
      - Whether to validate the server certificate when O(url) uses C(https).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of CA certificates to validate the server certificate against.
    type: path
  use_proxy:
    description:
      - Whether to use a proxy from the environment (E(https_proxy), E(http_proxy), E(no_proxy)).
    type: bool
    default: true
  systemd_unit:
    description:
      - Name of the systemd unit that runs the server, for example V(vllm@qwen.service); usually the service that was
        just started or restarted.
      - The module reads the state of the unit once at the start with C(systemctl show), and again after a failed
        probe (refused connection, HTTP 5xx...), at most once per O(interval). It never queries systemd while the
        server answers.
      - It fails at once, without waiting out O(timeout), when the unit is C(failed), when it is C(inactive) (C(dead)),
        when it crashed and waits to be restarted (sub-state C(auto-restart)), or when its restart counter
        C(NRestarts) grew since the start of the module, that is the service crashed and systemd restarted it.
      - The message then gives the state of the unit and points to C(journalctl -u <unit>).
      - Requires C(systemctl) on the managed node. An empty string is the same as not setting the option.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so it does the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The requests are made from the managed node, so V(http://127.0.0.1:8000) means the server on that node.
  - O(systemd_unit) needs systemd 235 or later to notice restarts through C(NRestarts); older versions only notice
    the C(failed), C(inactive) and C(auto-restart) states.
seealso:
  - name: vLLM OpenAI-compatible server
    description: The endpoints this module polls.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
"""

EXAMPLES = r"""
---
- name: Wait until vLLM answers a one-token completion
  gpubox.llm.vllm_health:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_api_key }}"
    served_model_name: qwen2.5-7b-instruct
    timeout: 900
  register: vllm

- name: Show the served models and the probe latency
  ansible.builtin.debug:
    msg: "{{ vllm.models }} answered in {{ vllm.probe_latency_ms }} ms after {{ vllm.waited_s }} s"

- name: Only wait for the HTTP health endpoint, polling twice a second
  gpubox.llm.vllm_health:
    url: https://llm.example.com/v1
    probe: health
    interval: 0.5
    timeout: 300
    ca_path: /etc/ssl/certs/internal-ca.pem

- name: Restart vLLM, then wait for it but fail fast if the service crashes
  ansible.builtin.systemd_service:
    name: vllm@qwen.service
    state: restarted

- name: Wait for the restarted service
  gpubox.llm.vllm_health:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_api_key }}"
    served_model_name: qwen2.5-7b-instruct
    systemd_unit: vllm@qwen.service
    timeout: 900
  register: vllm

- name: Check that the model list is served, without generating
  gpubox.llm.vllm_health:
    url: http://127.0.0.1:8000
    api_key: "{{ vllm_api_key }}"
    probe: models
    timeout: 0
  check_mode: true
"""

RETURN = r"""
ready:
  description: Whether the server answered the probe before the timeout. It is V(true) whenever the module succeeds.
  returned: always
  type: bool
  sample: true
models:
  description:
    - Ids of the models listed by C(GET /v1/models), in server order.
    - Empty when C(/v1/models) was not queried or had not answered yet.
  returned: always
  type: list
  elements: str
  sample: ["qwen2.5-7b-instruct"]
model:
  description: Model that was sent the one-token completion (or the embedding request).
  returned: when O(probe=completion) or O(probe=embedding) reached that request
  type: str
  sample: qwen2.5-7b-instruct
waited_s:
  description: Seconds from the start of the module until the server was ready (or until it gave up).
  returned: always
  type: float
  sample: 41.532
probe_latency_ms:
  description:
    - Milliseconds taken by the last request of the final, successful probe (C(/health), C(/v1/models) or
      C(/v1/completions)).
  returned: success
  type: float
  sample: 23.417
status:
  description: HTTP status of the last answer received from the server; V(null) if none answered.
  returned: always
  type: int
  sample: 200
attempts:
  description: Number of probe attempts made.
  returned: always
  type: int
  sample: 42
unit_state:
  description:
    - State of O(systemd_unit) as last read with C(systemctl show); keys are the systemd property names.
    - C(NRestarts) and C(ExecMainStatus) are integers; a property that systemd does not report is V(null).
  returned: when O(systemd_unit) is set
  type: dict
  contains:
    LoadState:
      description: Whether systemd found the unit, for example V(loaded) or V(not-found).
      type: str
    ActiveState:
      description: For example V(activating), V(active), V(failed) or V(inactive).
      type: str
    SubState:
      description: For example V(start), V(running), V(auto-restart), V(failed) or V(dead).
      type: str
    Result:
      description: Result of the last run, for example V(success), V(exit-code), V(signal) or V(start-limit-hit).
      type: str
    ExecMainStatus:
      description: Exit status (or signal number) of the last main process.
      type: int
    NRestarts:
      description: How often systemd restarted the service automatically.
      type: int
  sample:
    LoadState: loaded
    ActiveState: activating
    SubState: auto-restart
    Result: exit-code
    ExecMainStatus: 1
    NRestarts: 2
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpubox.llm.plugins.module_utils.openai_client import (
    OpenAIClient,
    OpenAIClientError,
    OpenAIHTTPError,
)

PROBE_PROMPT = "ping"
RETRY_4XX = (408, 425, 429)
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
UNIT_INT_PROPERTIES = ("ExecMainStatus", "NRestarts")


class NotReady(Exception):
    """The server answered, but is not ready yet."""


class Fatal(Exception):
    """Waiting longer cannot help."""


class Prober:
    def __init__(self, client, probe, served_model_name):
        self.client = client
        self.probe = probe
        self.served_model_name = served_model_name
        self.models = []
        self.model = None
        self.status = None
        self.latency_ms = None
        self.waiting_for = ""

    def _check_models(self, timeout):
        url = self.client.url_for("/v1/models")
        self.waiting_for = f"{url} to list the served models"
        resp = self.client.models(timeout=timeout)
        self.status = resp.status
        self.models = resp.ids
        self.latency_ms = resp.latency_ms
        if not resp.ids:
            raise NotReady(f"HTTP {resp.status} from GET {url} lists no models yet")
        if self.served_model_name and self.served_model_name not in resp.ids:
            raise Fatal(
                f"model {self.served_model_name!r} is not served by {self.client.base_url}; "
                f"served models: {', '.join(repr(m) for m in resp.ids)}"
            )

    def attempt(self, timeout):
        """One probe round: return when ready, raise NotReady, Fatal or OpenAIClientError otherwise."""
        if self.probe == "health":
            self.waiting_for = f"{self.client.url_for('/health')} to return 200"
            resp = self.client.health(timeout=timeout)
            self.status = resp.status
            self.latency_ms = resp.latency_ms
            if self.served_model_name:
                self._check_models(timeout)
            return
        self._check_models(timeout)
        if self.probe == "models":
            return
        self.model = self.served_model_name or self.models[0]
        if self.probe == "embedding":
            url = self.client.url_for("/v1/embeddings")
            self.waiting_for = f"{url} to embed a word with model {self.model!r}"
            resp = self.client.embeddings(self.model, PROBE_PROMPT, timeout=timeout)
            self.status = resp.status
            data = resp.data.get("data") if isinstance(resp.data, dict) else None
            if not data or not isinstance(data[0], dict) or not data[0].get("embedding"):
                raise NotReady(f"HTTP {resp.status} from POST {url} has no embedding in 'data'")
            self.latency_ms = resp.latency_ms
            return
        url = self.client.url_for("/v1/completions")
        self.waiting_for = f"{url} to answer a 1-token completion for model {self.model!r}"
        resp = self.client.completion(self.model, PROBE_PROMPT, max_tokens=1, timeout=timeout)
        self.status = resp.status
        if not isinstance(resp.data, dict) or not isinstance(resp.data.get("choices"), list):
            raise NotReady(f"HTTP {resp.status} from POST {url} has no 'choices' list")
        self.latency_ms = resp.latency_ms


class UnitError(Exception):
    """systemctl could not report the state of the unit."""


def parse_unit_state(text):
    """Parse the ``Key=Value`` lines of ``systemctl show`` into a dict of UNIT_PROPERTIES."""
    raw = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in UNIT_PROPERTIES:
            raw[key.strip()] = value.strip()
    state = {}
    for key in UNIT_PROPERTIES:
        value = raw.get(key) or None
        if value is not None and key in UNIT_INT_PROPERTIES:
            try:
                value = int(value)
            except ValueError:
                value = None
        state[key] = value
    return state


class UnitWatch:
    """Reads the state of the systemd unit that runs the server, to notice that it crashed."""

    def __init__(self, module, unit, interval):
        self.module = module
        self.unit = unit
        self.interval = interval
        self.systemctl = module.get_bin_path("systemctl", required=True)
        self.read_for = time.monotonic()
        self.state = self.read()
        self.initial_restarts = self.state["NRestarts"]

    def read(self):
        cmd = [self.systemctl, "show", "--property=" + ",".join(UNIT_PROPERTIES), "--", self.unit]
        rc, out, err = self.module.run_command(cmd)
        if rc != 0:
            raise UnitError(f"'systemctl show {self.unit}' failed with rc={rc}: {(err or out).strip()}")
        state = parse_unit_state(out)
        if state["ActiveState"] is None:
            raise UnitError(f"'systemctl show {self.unit}' did not report ActiveState: {out.strip()!r}")
        return state

    def refresh(self, attempt_began):
        """Re-read the state after a failed probe, at most once per interval; keep the last state on errors."""
        if attempt_began - self.read_for < self.interval:
            return
        self.read_for = attempt_began
        try:
            self.state = self.read()
        except UnitError:
            pass

    def describe(self):
        s = self.state
        return (
            f"ActiveState={s['ActiveState']}, SubState={s['SubState']}, Result={s['Result']}, "
            f"ExecMainStatus={s['ExecMainStatus']}, NRestarts={s['NRestarts']}"
        )

    def down(self):
        """Why the unit cannot serve anymore (a phrase), or None while it may still come up."""
        s = self.state
        active, sub = s["ActiveState"], s["SubState"] or ""
        restarts, initial = s["NRestarts"], self.initial_restarts
        if s["LoadState"] == "not-found":
            return "was not found (LoadState=not-found)"
        if active == "failed":
            return "crashed (ActiveState=failed)"
        if restarts is not None and initial is not None and restarts > initial:
            return f"crashed and was restarted by systemd (NRestarts {initial} -> {restarts})"
        if sub.startswith("auto-restart"):
            return f"crashed and waits to be restarted by systemd (SubState={sub})"
        if active == "inactive" and sub == "dead":
            return "stopped (ActiveState=inactive, SubState=dead)"
        return None


def auth_message(exc, has_key):
    if has_key:
        what = "the API key given in api_key was rejected (wrong key?)"
    else:
        what = "the server requires an API key and none was given (set api_key)"
    return f"HTTP {exc.status} from {exc.url}: {what}"


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "api_key": {"type": "str", "no_log": True},
            "served_model_name": {"type": "str"},
            "probe": {
                "type": "str",
                "default": "completion",
                "choices": ["health", "models", "completion", "embedding"],
            },
            "timeout": {"type": "int", "default": 600},
            "interval": {"type": "float", "default": 1.0},
            "request_timeout": {"type": "float", "default": 30.0},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "use_proxy": {"type": "bool", "default": True},
            "systemd_unit": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    timeout, interval, request_timeout = p["timeout"], p["interval"], p["request_timeout"]
    if timeout < 0:
        module.fail_json(msg=f"timeout must be 0 or more, got {timeout}")
    if interval <= 0:
        module.fail_json(msg=f"interval must be more than 0, got {interval}")
    if request_timeout <= 0:
        module.fail_json(msg=f"request_timeout must be more than 0, got {request_timeout}")
    try:
        client = OpenAIClient(
            p["url"],
            api_key=p["api_key"],
            timeout=request_timeout,
            validate_certs=p["validate_certs"],
            ca_path=p["ca_path"],
            use_proxy=p["use_proxy"],
        )
    except ValueError as exc:
        module.fail_json(msg=f"invalid url: {exc}")

    prober = Prober(client, p["probe"], p["served_model_name"])
    start = time.monotonic()
    watch = None
    if p["systemd_unit"]:
        try:
            watch = UnitWatch(module, p["systemd_unit"], interval)
        except UnitError as exc:
            module.fail_json(msg=f"cannot read the state of systemd unit {p['systemd_unit']}: {exc}")
    deadline = start + timeout
    attempts = 0
    last_error = None

    def result(**kwargs):
        out = {
            "changed": False,
            "ready": False,
            "models": prober.models,
            "waited_s": round(time.monotonic() - start, 3),
            "status": prober.status,
            "attempts": attempts,
        }
        if prober.model is not None:
            out["model"] = prober.model
        if watch is not None:
            out["unit_state"] = watch.state
        out.update(kwargs)
        return out

    while True:
        attempts += 1
        began = time.monotonic()
        req_timeout = request_timeout
        if timeout > 0:
            req_timeout = min(req_timeout, max(deadline - began, 1.0))
        try:
            prober.attempt(req_timeout)
        except Fatal as exc:
            module.fail_json(msg=str(exc), **result())
        except NotReady as exc:
            last_error = str(exc)
        except OpenAIHTTPError as exc:
            prober.status = exc.status
            if exc.status in (401, 403):
                module.fail_json(msg=auth_message(exc, client.has_api_key), **result())
            if 400 <= exc.status < 500 and exc.status not in RETRY_4XX:
                module.fail_json(msg=f"unexpected answer while waiting for {prober.waiting_for}: {exc}", **result())
            last_error = str(exc)
        except OpenAIClientError as exc:
            last_error = str(exc)
        else:
            module.exit_json(**result(ready=True, probe_latency_ms=prober.latency_ms))

        unit_info = ""
        if watch is not None:
            watch.refresh(began)
            why = watch.down()
            if why:
                module.fail_json(
                    msg=f"systemd unit {watch.unit} {why} while the module was waiting for {prober.waiting_for} "
                    f"(probe={prober.probe}, {attempts} attempts, last error: {last_error}); "
                    f"unit state: {watch.describe()}; see 'journalctl -u {watch.unit}'",
                    **result(),
                )
            unit_info = f"; systemd unit {watch.unit}: {watch.describe()}"

        now = time.monotonic()
        if now >= deadline:
            module.fail_json(
                msg=f"waited {timeout}s for {prober.waiting_for} (probe={prober.probe}, {attempts} attempts); "
                f"last error: {last_error}{unit_info}",
                **result(),
            )
        time.sleep(min(max(interval - (now - began), 0.0), deadline - now))


if __name__ == "__main__":
    main()
