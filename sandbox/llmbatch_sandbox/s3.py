"""The sandbox's S3 endpoint: moto's server in a thread on 127.0.0.1, with the bucket BatchJobs
use, so they reference it exactly as they would MinIO."""

from __future__ import annotations

from dataclasses import dataclass

SANDBOX_BUCKET = "llmbatch"
SANDBOX_REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep the printed endpoint reproducible.
SANDBOX_ACCESS_KEY_ID = "sandbox-access-key"
SANDBOX_SECRET_ACCESS_KEY = "sandbox-secret-key"


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str = SANDBOX_ACCESS_KEY_ID
    secret_access_key: str = SANDBOX_SECRET_ACCESS_KEY
    region: str = SANDBOX_REGION


class SandboxS3:
    """``start()`` serves S3 on a free port and creates ``bucket``; ``stop()`` shuts it down."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, bucket: str = SANDBOX_BUCKET
    ) -> None:
        self.host = host
        self.port = port
        self.bucket = bucket
        self.credentials = S3Credentials()
        self.endpoint_url = ""
        self._server: object | None = None

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._create_bucket()
        return self.endpoint_url

    def _create_bucket(self) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.credentials.region,
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
        )
        client.create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        server = self._server
        self._server = None
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
