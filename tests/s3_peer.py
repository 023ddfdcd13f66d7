"""A real S3-compatible server for Herald's tests: moto's server (PyPI moto[server]) with
authentication on, so every request must carry a valid AWS Signature V4 from a known key.

  s3_peer.py serve --port P      start it, make a user, a key and a bucket, print them as
                                 one JSON line, and serve until stdin closes
  s3_peer.py corrupt ...         flip one byte of an object, keeping its metadata (bit rot)
"""

import argparse
import json
import os
import sys


def client(service, endpoint, key, secret):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


def serve(port):
    # The first three actions (making the user, its policy and its key) are let through;
    # everything after is checked against IAM, signatures included.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    iam = client("iam", endpoint, "bootstrap", "bootstrap")
    iam.create_user(UserName="herald")
    iam.put_user_policy(
        UserName="herald",
        PolicyName="backups",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    k = iam.create_access_key(UserName="herald")["AccessKey"]
    s3 = client("s3", endpoint, k["AccessKeyId"], k["SecretAccessKey"])
    s3.create_bucket(Bucket="herald-backups")
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "bucket": "herald-backups",
                "access_key_id": k["AccessKeyId"],
                "secret_access_key": k["SecretAccessKey"],
            }
        ),
        flush=True,
    )
    sys.stdin.read()
    server.stop()


def corrupt(a):
    s3 = client("s3", a.endpoint, a.access_key_id, a.secret_access_key)
    got = s3.get_object(Bucket=a.bucket, Key=a.key)
    body = bytearray(got["Body"].read())
    body[len(body) // 2] ^= 0x01
    s3.put_object(Bucket=a.bucket, Key=a.key, Body=bytes(body), Metadata=got["Metadata"])


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("corrupt")
    for f in ("--endpoint", "--bucket", "--key", "--access-key-id", "--secret-access-key"):
        c.add_argument(f, required=True)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.port)
    else:
        corrupt(a)


if __name__ == "__main__":
    main()
