# One image with the five Maildrop stages; compose.yaml picks the binary per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p maildrop-ingest -p maildrop-filter -p maildrop-store-writer \
      -p maildrop-gateway -p maildrop-reporter \
 && mkdir /out \
 && cp target/release/maildrop-ingest target/release/maildrop-filter \
       target/release/maildrop-store-writer target/release/maildrop-gateway \
       target/release/maildrop-reporter /out/

FROM debian:bookworm-slim
# curl is the health-check probe: compose.yaml asks each stage's /readyz.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 maildrop
COPY --from=build /out/ /usr/local/bin/
USER maildrop
ENV MAILDROP_LOG_FORMAT=json
# Ports: SMTP 2525 (ingest), HTTP 8080 (gateway), ops endpoints 9101-9104 (the other stages).
EXPOSE 2525 8080 9101 9102 9103 9104
STOPSIGNAL SIGTERM
CMD ["maildrop-gateway"]
