"""Real SIP calls on loopback between baresip user agents (Debian's ``baresip-core``).

The shop's agent answers automatically and records both directions with the ``sndfile``
module; a customer's agent dials it with speech from espeak-ng as its microphone and hangs up
when the speech ends. The shop's agent is driven and watched over ``ctrl_tcp`` (JSON in
netstrings), so the test sees ``CALL_ESTABLISHED``/``CALL_CLOSED`` as they happen.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import wave
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.stack import free_port, stop_processes

RATE = 8000


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is missing: deploy/stack.sh up installs it")
    return path


def speak(text: str, target: Path) -> Path:
    """Speech as a telephone would carry it: 8 kHz, mono, 16-bit PCM."""
    raw = target.with_suffix(".espeak.wav")
    subprocess.run([tool("espeak-ng"), "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(
        [tool("sox"), str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(target)], check=True
    )
    return target


def tone(seconds: float, target: Path, frequency: int = 600) -> Path:
    """The agent's side of the line: a quiet tone (baresip needs a 16-bit PCM source)."""
    subprocess.run(
        [
            tool("sox"),
            "-n",
            "-r",
            str(RATE),
            "-c",
            "1",
            "-b",
            "16",
            str(target),
            "synth",
            str(seconds),
            "sine",
            str(frequency),
            "vol",
            "0.05",
        ],
        check=True,
    )
    return target


def _free_sip_port() -> int:
    """A port whose neighbour is free too: baresip also listens for SIP over TLS on port+1."""
    while True:
        port = free_port()
        with closing(socket.socket()) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@dataclass
class Agent:
    """One baresip process with its own configuration directory, bound to 127.0.0.1 only."""

    home: Path
    aor: str
    source: Path
    record_dir: Path | None = None
    answer: bool = False
    sip_port: int = field(default_factory=_free_sip_port)
    ctrl_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _buffer: bytes = b""
    _ctrl: socket.socket | None = None

    @property
    def uri(self) -> str:
        user = self.aor.removeprefix("sip:").split("@", 1)[0]
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def start(self, *commands: str, quit_after: float = 60) -> Agent:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config").write_text(self._config())
        answer = ";answermode=auto" if self.answer else ""
        (self.home / "accounts").write_text(f"<{self.aor}>;regint=0{answer}\n")
        args = [tool("baresip"), "-n", "127.0.0.1", "-f", str(self.home)]
        args += [arg for command in commands for arg in ("-e", command)]
        args += ["-t", str(int(quit_after))]
        log = (self.home / "baresip.log").open("wb")
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        self._connect()
        return self

    def _config(self) -> str:
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            f"audio_source aufile,{self.source}",
            "audio_player aufile,/dev/null",
            "audio_alert aufile,/dev/null",
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module aufile.so",
            "module ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            "module_tmp account.so",
            "module_app menu.so",
        ]
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            lines += ["module sndfile.so", f"snd_path {self.record_dir}"]
        return "\n".join(lines) + "\n"

    def _connect(self, timeout: float = 20) -> None:
        """Ready once its control port accepts a connection (no fixed sleep)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"baresip exited: {self.log()}")
            with suppress(OSError):
                self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                return
            time.sleep(0.1)
        raise AssertionError(f"baresip control port never opened: {self.log()}")

    def command(self, command: str, params: str = "") -> None:
        assert self._ctrl is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._ctrl.sendall(str(len(body)).encode() + b":" + body + b",")

    def wait_event(self, kind: str, timeout: float = 60) -> tuple[float, dict[str, Any]]:
        """The next event of this type, with the monotonic time it arrived."""
        deadline = time.monotonic() + timeout
        assert self._ctrl is not None
        while time.monotonic() < deadline:
            message = self._next_message(deadline)
            if message.get("event") and message.get("type") == kind:
                return time.monotonic(), message
        raise AssertionError(f"no {kind} from baresip within {timeout} s: {self.log()}")

    def _next_message(self, deadline: float) -> dict[str, Any]:
        assert self._ctrl is not None
        while True:
            length, colon, rest = self._buffer.partition(b":")
            if colon and len(rest) > int(length):
                self._buffer = rest[int(length) + 1 :]
                message: dict[str, Any] = json.loads(rest[: int(length)])
                return message
            self._ctrl.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self._ctrl.recv(65536)
            if not chunk:
                raise AssertionError(f"baresip closed its control connection: {self.log()}")
            self._buffer += chunk

    def recordings(self, timeout: float = 10) -> tuple[Path, Path]:
        """The last call's recording: what the shop heard (dec) and what it sent (enc), once
        sndfile has closed both (it writes the WAV sizes when it closes them)."""
        assert self.record_dir is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            decoded = sorted(self.record_dir.glob("dump-*-dec.wav"))
            if decoded:
                pair = (
                    decoded[-1],
                    decoded[-1].with_name(decoded[-1].name.replace("-dec.wav", "-enc.wav")),
                )
                if all(_frames(path) for path in pair):
                    return pair
            time.sleep(0.1)
        raise AssertionError(f"sndfile wrote no complete recording: {self.log()}")

    def log(self) -> str:
        path = self.home / "baresip.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()
        if self.process is not None:
            stop_processes([self.process])


def _frames(path: Path) -> int:
    try:
        with wave.open(str(path)) as recording:
            return recording.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


@dataclass(frozen=True)
class PlacedCall:
    peer_uri: str  # the caller as the shop's agent saw it (its From header)
    seconds: float  # from the answer to the hang-up, as the shop's agent saw them
    recording: Path  # stereo: the caller on the left, the agent on the right


def place_call(shop: Agent, caller: Agent, workdir: Path) -> PlacedCall:
    """The caller dials the shop, speaks, hangs up; the shop's two recorded directions are
    merged into one dual-channel WAV, as a PBX's MixMonitor would write it (``-M``)."""
    caller.start(f"/dial {shop.uri}", quit_after=120)
    try:
        answered, event = shop.wait_event("CALL_ESTABLISHED")
        closed, _ = shop.wait_event("CALL_CLOSED", timeout=120)
    finally:
        caller.stop()
    heard, sent = shop.recordings()
    stereo = workdir / f"call-{int(time.time() * 1000)}.wav"
    subprocess.run([tool("sox"), "-M", str(heard), str(sent), str(stereo)], check=True)
    return PlacedCall(str(event["peeruri"]), closed - answered, stereo)


KAMAILIO_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{sip_port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{ng_port}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && uri == myself) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{ rtpengine_delete(); }}
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    if (is_method("INVITE")) {{
        $var(meta) = "callvault_caller:" + $fU + "|callvault_callee:" + $rU
            + "|callvault_direction:inbound|callvault_call_id:" + $ci;
        rtpengine_offer("replace-origin replace-session-connection record-call=yes "
            + "metadata=$var(meta)");
        t_on_reply("ANSWER");
    }}
    $du = "sip:127.0.0.1:{shop_port}";
    if (!t_relay()) {{ sl_reply_error(); }}
    exit;
}}

onreply_route[ANSWER] {{
    if (has_body("application/sdp")) {{
        rtpengine_answer("replace-origin replace-session-connection record-call=yes");
    }}
}}
"""


@dataclass
class RecordingProxy:
    """Kamailio in front of the shop, with rtpengine relaying and recording the RTP (pcap)."""

    home: Path
    shop_port: int
    sip_port: int = field(default_factory=_free_sip_port)
    ng_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def spool(self) -> Path:
        return self.home / "spool"

    def start(self) -> RecordingProxy:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        low = 20000 + (self.ng_port * 7) % 30000  # a media port range unlikely to collide
        rtpengine = [tool("rtpengine"), "--foreground", "--log-stderr", "--table=-1"]
        rtpengine += ["--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{self.ng_port}"]
        rtpengine += [f"--port-min={low}", f"--port-max={low + 99}", "--delete-delay=0"]
        rtpengine += [f"--listen-cli=127.0.0.1:{free_port()}"]
        rtpengine += [f"--recording-dir={self.spool}", "--recording-method=pcap"]
        rtpengine += ["--recording-format=eth", f"--pidfile={self.home / 'rtpengine.pid'}"]
        self._run("rtpengine", rtpengine)
        self._await_udp(self.ng_port, b"ready d7:command4:pinge", b"pong")
        config = self.home / "kamailio.cfg"
        config.write_text(
            KAMAILIO_CFG.format(
                sip_port=self.sip_port, ng_port=self.ng_port, shop_port=self.shop_port
            )
        )
        kamailio = [tool("kamailio"), "-DD", "-E", "-f", str(config)]
        kamailio += ["-P", str(self.home / "kamailio.pid"), "-Y", str(self.home)]
        self._run("kamailio", kamailio)
        options = (
            f"OPTIONS sip:127.0.0.1:{self.sip_port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-ready\r\nMax-Forwards: 5\r\n"
            f"To: <sip:127.0.0.1:{self.sip_port}>\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\n"
            "Call-ID: ready@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        self._await_udp(self.sip_port, options.encode(), b"SIP/2.0 200")

    def _run(self, name: str, args: list[str]) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        )

    def _await_udp(self, port: int, request: bytes, answer: bytes, timeout: float = 30) -> None:
        """Ready once the service answers on its UDP port (no fixed sleep)."""
        deadline = time.monotonic() + timeout
        with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as probe:
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.3)
            while time.monotonic() < deadline:
                probe.sendto(request, ("127.0.0.1", port))
                with suppress(TimeoutError):
                    if answer in probe.recv(65536):
                        return
        raise AssertionError(f"nothing answered on udp {port}: {self.logs()}")

    def finished_calls(self) -> list[Path]:
        return sorted((self.spool / "metadata").glob("*.txt"))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.home.glob("*.log"))

    def stop(self) -> None:
        stop_processes(self.processes)
