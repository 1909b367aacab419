package org.imprinting.demo;

import android.app.Activity;
import android.app.AlertDialog;
import android.content.DialogInterface;
import android.os.Bundle;
import android.view.LayoutInflater;
import android.view.View;
import android.view.ViewGroup;
import android.widget.BaseAdapter;
import android.widget.EditText;
import android.widget.ListView;
import android.widget.TextView;
import android.widget.Toast;

import org.imprinting.core.ClassStore;

import java.util.ArrayList;
import java.util.List;

/** The taught classes with their shot counts; rename and delete, saved at once. */
public class ClassesActivity extends Activity {
    private final List<String> labels = new ArrayList<String>();
    private ClassStore store;
    private Adapter adapter;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_classes);
        store = Store.current();
        if (store == null) {
            // The process was restarted on this screen before the model loaded: go back to the camera.
            finish();
            return;
        }
        ListView list = (ListView) findViewById(R.id.list);
        list.setEmptyView(findViewById(R.id.empty));
        adapter = new Adapter();
        list.setAdapter(adapter);
        refresh();
    }

    private void refresh() {
        labels.clear();
        labels.addAll(store.labels());
        adapter.notifyDataSetChanged();
    }

    private void rename(final String old) {
        final EditText input = new EditText(this);
        input.setText(old);
        input.setSingleLine(true);
        new AlertDialog.Builder(this)
                .setTitle(R.string.rename)
                .setView(input)
                .setPositiveButton(R.string.rename, new DialogInterface.OnClickListener() {
                    @Override
                    public void onClick(DialogInterface d, int which) {
                        try {
                            store.rename(old, input.getText().toString());
                            Store.saveAsync();
                            refresh();
                        } catch (IllegalArgumentException e) {
                            Toast.makeText(ClassesActivity.this, e.getMessage(), Toast.LENGTH_LONG).show();
                        }
                    }
                })
                .setNegativeButton(R.string.cancel, null)
                .show();
    }

    private void delete(final String label) {
        new AlertDialog.Builder(this)
                .setTitle(getString(R.string.delete) + " \"" + label + "\"?")
                .setPositiveButton(R.string.delete, new DialogInterface.OnClickListener() {
                    @Override
                    public void onClick(DialogInterface d, int which) {
                        store.remove(label);
                        Store.saveAsync();
                        refresh();
                    }
                })
                .setNegativeButton(R.string.cancel, null)
                .show();
    }

    private final class Adapter extends BaseAdapter {
        @Override
        public int getCount() {
            return labels.size();
        }

        @Override
        public Object getItem(int position) {
            return labels.get(position);
        }

        @Override
        public long getItemId(int position) {
            return position;
        }

        @Override
        public View getView(int position, View view, ViewGroup parent) {
            if (view == null) {
                view = LayoutInflater.from(ClassesActivity.this).inflate(R.layout.item_class, parent, false);
            }
            final String label = labels.get(position);
            ((TextView) view.findViewById(R.id.class_label)).setText(label);
            String count = store.contains(label) ? store.count(label) + " shots" : "";
            ((TextView) view.findViewById(R.id.class_count)).setText(count);
            view.findViewById(R.id.rename).setOnClickListener(new View.OnClickListener() {
                @Override
                public void onClick(View v) {
                    rename(label);
                }
            });
            view.findViewById(R.id.delete).setOnClickListener(new View.OnClickListener() {
                @Override
                public void onClick(View v) {
                    delete(label);
                }
            });
            return view;
        }
    }
}
