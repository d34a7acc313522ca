#!/bin/bash
# LocalStack ready hook: create the tables defined in template.yaml (the only table definition)
# with the same script the moto-based stack uses. LocalStack's Python has boto3 and PyYAML.
set -euo pipefail
export AWS_ENDPOINT_URL=http://localhost:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
python3 /project/tables.py create --template /project/template.yaml
