"""The host's end of a socket to the sandbox: whole frames, each send and receive bounded by a deadline."""

import select
import socket
import time

from . import _protocol as protocol

_READ_CHUNK = 1 << 16
_EVENT_MASKS = {"read": select.POLLIN | select.POLLPRI, "write": select.POLLOUT}
_CLOSED = select.POLLHUP | select.POLLERR | select.POLLNVAL


class ChannelTimeout(Exception):
    """The other side did not read or answer before the deadline."""


class ChannelClosed(Exception):
    """The other side closed its end, or sent something that is not a valid message."""


class Channel:
    """Frames over a non-blocking socket; nothing the other side does can block the host past a deadline."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        self.buffer = bytearray()

    def send(self, msg: dict, deadline: float, *, fds: tuple[int, ...] = ()) -> None:
        """Send one message (with `fds` attached to its first byte) before `deadline`."""
        data = memoryview(protocol.frame(msg))
        try:
            if fds:
                data = data[self._send_fds_once(data, fds, deadline) :]
            while data:
                try:
                    data = data[self.sock.send(data) :]
                except BlockingIOError:
                    self._wait("write", deadline)
        except OSError as e:
            raise ChannelClosed(f"the sandbox closed its socket: {e}") from None

    def receive(self, expected: frozenset[str], deadline: float) -> dict:
        """The next message, which must be one of `expected`; `ChannelClosed` for anything else."""
        body = self._read_body(deadline)
        try:
            return protocol.parse(body, expected)
        except protocol.ProtocolError as e:
            raise ChannelClosed(f"the sandbox sent an invalid message: {e}") from None

    def readable(self) -> bool:
        """Whether a frame (or the end of the stream) is waiting, without blocking."""
        return bool(self.buffer) or bool(select.select([self.sock], [], [], 0)[0])

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def _send_fds_once(self, data: memoryview, fds: tuple[int, ...], deadline: float) -> int:
        while True:
            try:
                return socket.send_fds(self.sock, [data], list(fds))
            except BlockingIOError:
                self._wait("write", deadline)

    def _read_body(self, deadline: float) -> bytes:
        while len(self.buffer) < protocol.HEADER.size:
            self._fill(deadline)
        try:
            size = protocol.frame_size(bytes(self.buffer[: protocol.HEADER.size]))
        except protocol.ProtocolError as e:
            raise ChannelClosed(f"the sandbox sent an invalid frame: {e}") from None
        end = protocol.HEADER.size + size
        while len(self.buffer) < end:
            self._fill(deadline)
        body = bytes(self.buffer[protocol.HEADER.size : end])
        del self.buffer[:end]
        return body

    def _fill(self, deadline: float) -> None:
        while True:
            try:
                chunk = self.sock.recv(_READ_CHUNK)
                break
            except BlockingIOError:
                self._wait("read", deadline)
            except OSError as e:
                raise ChannelClosed(f"the sandbox's socket failed: {e}") from None
        if not chunk:
            raise ChannelClosed("the sandbox closed its socket")
        self.buffer += chunk

    def _wait(self, direction: str, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout
        poller = select.poll()
        poller.register(self.sock, _EVENT_MASKS[direction])
        events = poller.poll(remaining * 1000)
        if not events:
            raise ChannelTimeout
        if events[0][1] & _CLOSED and direction == "write":
            raise ChannelClosed("the sandbox closed its socket")


def wait_for_any(channels: list[Channel], deadline: float) -> list[Channel]:
    """The channels among `channels` that can be read (a frame or the end of the stream) before `deadline`."""
    ready = [channel for channel in channels if channel.buffer]
    if ready:
        return ready
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ChannelTimeout
    readable, _, _ = select.select(channels, [], [], remaining)
    if not readable:
        raise ChannelTimeout
    return readable
