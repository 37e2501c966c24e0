"""`aws s3 cp s3://BUCKET/KEY -` for the test machine (which has boto3, through moto, but
no AWS CLI): writes the object to stdout. The endpoint and credentials come from the
AWS_* variables, as for the CLI.

    python3 tests/python/s3cat.py s3://BUCKET/KEY
"""

import os
import sys

import boto3

url = sys.argv[1]
bucket, key = url.removeprefix("s3://").split("/", 1)
s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
s3.download_fileobj(bucket, key, sys.stdout.buffer)
