# One image with the five Maildrop stages; compose.yaml picks the binary per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/maildrop-ingest target/release/maildrop-filter \
       target/release/maildrop-store-writer target/release/maildrop-gateway \
       target/release/maildrop-reporter /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 maildrop
COPY --from=build /out/ /usr/local/bin/
USER maildrop
ENV MAILDROP_LOG_FORMAT=json
CMD ["maildrop-gateway"]
