"""The official `openai` package against `abc serve` (tests/test_serve.sh runs it in a virtualenv).

usage: serve_openai_client.py PORT MODEL IMAGE TEXT...
Prints one line per embedding, values as %.9g of the float32 value (the format `abc embed` prints):
  text <i> <values>      client.embeddings.create(input=[TEXT...]) (the client's default base64 encoding)
  float <i> <values>     the same with encoding_format="float"
  query <values>         client.embeddings.create(input=TEXT[0], extra_body={"abc_role": "query"})
  chat <values>          vLLM's multimodal form {"messages": [image, TEXT[0]]} through client.post
  chat_extra_body <values>  the same through embeddings.create(input="", extra_body={"messages": ...})
"""
import base64
import struct
import sys

from openai import OpenAI
from openai.types import CreateEmbeddingResponse


def fmt(vec):
    return " ".join("%.9g" % struct.unpack("<f", struct.pack("<f", v))[0] for v in vec)


def main():
    port, model, image, texts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    client = OpenAI(base_url="http://127.0.0.1:%s/v1" % port, api_key="unused", max_retries=0, timeout=120)
    r = client.embeddings.create(model=model, input=texts)
    for d in r.data:
        print("text", d.index, fmt(d.embedding))
    r = client.embeddings.create(model=model, input=texts, encoding_format="float")
    for d in r.data:
        print("float", d.index, fmt(d.embedding))
    r = client.embeddings.create(model=model, input=texts[0], extra_body={"abc_role": "query"})
    print("query", fmt(r.data[0].embedding))
    with open(image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    body = {
        "model": model,
        "encoding_format": "float",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": texts[0]},
        ]}],
    }
    r = client.post("/embeddings", cast_to=CreateEmbeddingResponse, body=body)
    print("chat", fmt(r.data[0].embedding))
    print("usage", r.usage.prompt_tokens, r.usage.total_tokens)
    # the same through embeddings.create: "input" left empty, the conversation in extra_body
    r = client.embeddings.create(model=model, input="", encoding_format="float",
                                 extra_body={"messages": body["messages"]})
    print("chat_extra_body", fmt(r.data[0].embedding))


if __name__ == "__main__":
    main()
