//! A Kodi-style add-on: plain synchronous code, no async and no tokio in
//! sight, calling a service over the blocking client and its blocking stub.
//! (The service runs in this process for the example; an add-on would
//! connect to one that is already running.)
//!
//! Run it with `cargo run -p rpc-examples --bin addon`; it ends by itself.

use rpc_core::{expose, RpcError};
use rpc_transport::blocking;
use rpc_transport::Server;

/// The service's object: a small media library.
pub struct Library;

#[expose]
impl Library {
    /// The titles whose name contains `text`.
    pub fn search(&self, text: String) -> Vec<String> {
        ["Metropolis", "Modern Times", "Nosferatu"]
            .into_iter()
            .filter(|t| t.to_lowercase().contains(&text.to_lowercase()))
            .map(String::from)
            .collect()
    }

    /// Starts playing `title`; fails for a title the library lacks.
    pub fn play(&self, title: String) -> Result<String, String> {
        match title.as_str() {
            "Metropolis" | "Modern Times" | "Nosferatu" => Ok(format!("playing {title}")),
            _ => Err(format!("no such title: {title}")),
        }
    }
}

fn main() -> Result<(), RpcError> {
    let service = blocking::serve(Server::builder().expose(Library))?;

    let client = blocking::connect_with(service.local_addr(), |c| c.name("addon"))?;
    let library = LibraryClient::new(client.peer()).blocking(client.runtime());
    let found = library.search("mo".into())?;
    println!("search(\"mo\") -> {found:?}");
    for title in found.iter().map(String::as_str).chain(["Casablanca"]) {
        match library.play(title.into())? {
            Ok(now) => println!("{now}"),
            Err(why) => println!("cannot play: {why}"),
        }
    }
    client.close();
    Ok(())
}
