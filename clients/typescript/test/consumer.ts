// Type-checked (never run) against the built package: dist/*.d.ts through
// package.json "exports", as an application would import it.
import {
  createDeskdClient,
  decodeError,
  isDeskdError,
  TicketPriority,
  type DeskdClient,
  type Ticket,
} from "@deskd/client";
import { TicketsService } from "@deskd/client/gen/deskd/tickets/v1/tickets_pb";

export async function example(token: () => Promise<string>): Promise<Ticket | undefined> {
  const client: DeskdClient = createDeskdClient({ baseUrl: "http://127.0.0.1:50051", token, tenant: "t", timeoutMs: 5000 });
  try {
    const res = await client.tickets.createTicket({ ticket: { title: "Hi", priority: TicketPriority.HIGH } });
    return res.ticket;
  } catch (err) {
    const e = decodeError(err);
    const reason: string | undefined = e.violation("ticket.title")?.reason;
    const delay: number | undefined = e.retryDelayMs;
    if (isDeskdError(e, "NOT_FOUND")) {
      return undefined;
    }
    throw new Error(`${e.codeName} ${reason ?? ""} ${delay ?? ""}`);
  } finally {
    client.close();
  }
}

export const serviceName: string = TicketsService.typeName;
