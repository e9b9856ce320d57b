# A free TCP port on 127.0.0.1 (bound, then released for a server to take).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
