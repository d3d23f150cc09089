"""Serve H.264 files over RTSP (TCP and UDP) for the camera tests and bench.

Runs under the system Python, which has GStreamer's RTSP server through
PyGObject (Debian: gir1.2-gst-rtsp-server-1.0, installed by scripts/services):

    /usr/bin/python3 tests/cctv_rtsp_server.py PORT NAME=FILE.mp4 [NAME=FILE ...]

Each client gets its own pipeline that plays the file from the start in real
time, like a camera that was switched on when the client connected; at the end
of the file the session ends. Prints "ready" once listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    Gst.init(None)
    port, mounts = sys.argv[1], sys.argv[2:]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    points = server.get_mount_points()
    for mount in mounts:
        name, _, path = mount.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( filesrc location="{path}" ! qtdemux ! h264parse '
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(False)
        points.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
