//! The ceiling for any RPC on this machine: a bare tonic unary service with
//! no middleware and no database. It serves deskd's own generated
//! `TicketsService` (same path, same message types, same prost codec) and
//! answers every GetTicket with one fixed, realistic ticket; every other
//! method is UNIMPLEMENTED. It runs as a separate process (this benchmark
//! re-executed with `--bare-server`), like deskd, and exits when its
//! standard input closes, so it never outlives the benchmark.

use std::{io::Read as _, net::SocketAddr, time::Duration};

use deskd::proto::tickets::v1::{
    self as pb,
    tickets_service_server::{TicketsService, TicketsServiceServer},
};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// A ticket the size of a seeded one (about 300 bytes of description).
fn fixed_ticket() -> pb::Ticket {
    let ts = |seconds| prost_types::Timestamp {
        seconds,
        nanos: 123_456_000,
    };
    pb::Ticket {
        id: "019ac9a4-1c2e-7001-8000-000000001234".into(),
        title: "Export to CSV never finishes (#4660)".into(),
        description: "Customer reports: since the last update the reports page shows an error right after \
                      signing in. Steps: open the dashboard, choose Reports, pick last month and press Export. \
                      Expected a CSV file; got a spinner and then \"something went wrong\". Browser: Firefox 133 \
                      on Windows 11. Three colleagues are affected; no workaround yet. Reference 4660."
            .into(),
        status: pb::TicketStatus::InProgress as i32,
        priority: pb::TicketPriority::High as i32,
        assignee_id: "019ac9a4-0000-7000-8000-0000000000a1".into(),
        reporter_id: "019ac9a4-0000-7000-8000-0000000000b2".into(),
        tags: vec!["billing".into(), "export".into()],
        create_time: Some(ts(1_764_300_000)),
        update_time: Some(ts(1_764_303_600)),
        resolve_time: None,
        etag: "\"3\"".into(),
    }
}

struct Bare {
    ticket: pb::Ticket,
}

#[tonic::async_trait]
impl TicketsService for Bare {
    async fn get_ticket(&self, _: Request<pb::GetTicketRequest>) -> Result<Response<pb::GetTicketResponse>, Status> {
        Ok(Response::new(pb::GetTicketResponse {
            ticket: Some(self.ticket.clone()),
        }))
    }

    async fn list_tickets(
        &self,
        _: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        Err(Status::unimplemented("bare server: GetTicket only"))
    }

    async fn create_ticket(
        &self,
        _: Request<pb::CreateTicketRequest>,
    ) -> Result<Response<pb::CreateTicketResponse>, Status> {
        Err(Status::unimplemented("bare server: GetTicket only"))
    }

    async fn update_ticket(
        &self,
        _: Request<pb::UpdateTicketRequest>,
    ) -> Result<Response<pb::UpdateTicketResponse>, Status> {
        Err(Status::unimplemented("bare server: GetTicket only"))
    }

    async fn delete_ticket(
        &self,
        _: Request<pb::DeleteTicketRequest>,
    ) -> Result<Response<pb::DeleteTicketResponse>, Status> {
        Err(Status::unimplemented("bare server: GetTicket only"))
    }

    async fn export_tickets(
        &self,
        _: Request<pb::ExportTicketsRequest>,
    ) -> Result<Response<pb::ExportTicketsResponse>, Status> {
        Err(Status::unimplemented("bare server: GetTicket only"))
    }
}

/// Serves until standard input closes. Prints `listening on <addr>` first.
pub fn serve() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        // TCP_NODELAY as deskd sets it; nothing else is configured.
        let incoming = TcpIncoming::bind(addr)
            .map_err(|e| format!("bind: {e}"))?
            .with_nodelay(Some(true));
        let local = incoming.local_addr().map_err(|e| format!("local_addr: {e}"))?;
        println!("listening on {local}");
        let service = TicketsServiceServer::new(Bare { ticket: fixed_ticket() });
        // A thread blocks on standard input (tokio's needs a feature deskd
        // does not enable) and reports its end.
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
        let stdin_closed = async {
            let _ = closed_rx.await;
            // Let the last responses go out.
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stdin_closed)
            .await
            .map_err(|e| format!("serve: {e}"))
    })
}
